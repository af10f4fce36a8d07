package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// ChildEnv is the environment variable that makes herald bench a relay
// process of a parent bench (--processes): its value is the child's spec.
const ChildEnv = "HERALD_BENCH_RELAY_CHILD"

// childSpec is what a relay process of the bench relays: the bench's
// PostgreSQL schema to its NATS stream, with the relay's settings.
type childSpec struct {
	DatabaseURL string        `json:"db"`
	NATSURL     string        `json:"nats"`
	Stream      natsjs.Config `json:"stream"`
	Workers     int           `json:"workers"`
	BatchSize   int           `json:"batch_size"`
	Poll        time.Duration `json:"poll_interval"`
	Source      string        `json:"source"`
}

// RunRelayChild is a relay process of a parent bench: once connected it
// says "ready" and waits for a line on in, so that all processes start
// together; then it relays until SIGTERM, printing its published count
// every few milliseconds ("published N") and, at the end, its peak RSS
// ("peak KiB").
func RunRelayChild(ctx context.Context, spec string, in io.Reader, out io.Writer) error {
	var cs childSpec
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		return fmt.Errorf("bench: relay process: %s: %w", ChildEnv, err)
	}
	pcfg, err := pgxpool.ParseConfig(cs.DatabaseURL)
	if err != nil {
		return err
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "herald-bench-relay"
	pcfg.MaxConns = int32(2*max(cs.Workers, 1) + 2) //nolint:gosec // small
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName, SpreadStart: true})
	if err != nil {
		return err
	}
	pub, err := natsjs.Connect(ctx, cs.NATSURL, cs.Stream)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	if err := pool.Ping(ctx); err != nil {
		return err
	}
	_, _ = fmt.Fprintln(out, "ready")
	if _, err := bufio.NewReader(in).ReadString('\n'); err != nil {
		return fmt.Errorf("bench: relay process: waiting for the start: %w", err)
	}
	relay := outbox.NewRelay(store, pub, outbox.RelayConfig{
		Workers: cs.Workers, BatchSize: cs.BatchSize, PollInterval: cs.Poll, Source: cs.Source,
	})
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_, _ = fmt.Fprintf(out, "published %d\n", relay.Counters().Published)
		case err := <-done:
			_, _ = fmt.Fprintf(out, "published %d\n", relay.Counters().Published)
			_, _ = fmt.Fprintf(out, "peak %d\n", ReadMem().HWM/1024)
			return err
		}
	}
}

// relayProcess is a relay process the bench started.
type relayProcess struct {
	cmd       *exec.Cmd
	start     io.WriteCloser
	ready     chan struct{}
	gone      chan struct{} // closed when its output ends
	published atomic.Int64
	peakKiB   atomic.Int64
	read      sync.WaitGroup
}

// drainWithProcesses runs n relay processes (this binary again, as
// RunRelayChild) until they have published total events.
func drainWithProcesses(ctx context.Context, cfg Config, db *database, ep *endpoint, total int64, published *atomic.Int64) (time.Duration, int64, error) {
	if db.pool == nil || ep.kind != app.BrokerNATS {
		return 0, 0, errors.New("bench: --processes needs PostgreSQL and a NATS broker (nats:// or embedded)")
	}
	self, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	rc := relayConfig(cfg.App.Relay)
	spec, err := json.Marshal(childSpec{DatabaseURL: db.url, NATSURL: ep.natsURL, Stream: ep.nats,
		Workers: rc.Workers, BatchSize: rc.BatchSize, Poll: rc.PollInterval, Source: rc.Source})
	if err != nil {
		return 0, 0, err
	}
	procs := make([]*relayProcess, cfg.Processes)
	stopAll := func() {
		for _, p := range procs {
			if p != nil {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, p := range procs {
			if p != nil {
				p.read.Wait()
				_ = p.cmd.Wait()
			}
		}
	}
	for i := range procs {
		p := &relayProcess{cmd: exec.CommandContext(ctx, self, "bench"), ready: make(chan struct{}), gone: make(chan struct{})} //nolint:gosec // this binary
		p.cmd.Env = append(os.Environ(), ChildEnv+"="+string(spec))
		p.cmd.Stderr = os.Stderr
		out, err := p.cmd.StdoutPipe()
		if err == nil {
			p.start, err = p.cmd.StdinPipe()
		}
		if err != nil {
			stopAll()
			return 0, 0, err
		}
		if err := p.cmd.Start(); err != nil {
			stopAll()
			return 0, 0, fmt.Errorf("bench: start relay process: %w", err)
		}
		procs[i] = p
		p.read.Go(func() { p.scan(out) })
	}
	for _, p := range procs {
		select {
		case <-p.ready:
		case <-p.gone:
			stopAll()
			return 0, 0, errors.New("bench: a relay process ended before it was ready (its error is above)")
		case <-time.After(time.Minute):
			stopAll()
			return 0, 0, errors.New("bench: a relay process did not get ready within a minute")
		}
	}
	start := time.Now()
	for _, p := range procs {
		_, _ = io.WriteString(p.start, "go\n")
	}
	sum := func() int64 {
		var n int64
		for _, p := range procs {
			n += p.published.Load()
		}
		published.Store(n)
		return n
	}
	err = waitProgress(ctx, sum, total, cfg.DrainTimeout)
	elapsed := time.Since(start)
	stopAll()
	sum()
	var peak int64
	for _, p := range procs {
		peak = max(peak, p.peakKiB.Load()*1024)
	}
	return elapsed, peak, err
}

// scan reads a relay process's reports.
func (p *relayProcess) scan(out io.Reader) {
	defer close(p.gone)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "ready" {
			close(p.ready)
			continue
		}
		key, val, _ := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "published":
			p.published.Store(n)
		case "peak":
			p.peakKiB.Store(n)
		}
	}
}
