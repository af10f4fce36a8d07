package guarantees_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgcdc"
	"github.com/heraldhq/herald/outbox/pgstore"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// The child relay: the test binary re-executed with these variables set runs
// a relay until it is killed.
const (
	childDriver = "HERALD_GUARANTEES_CHILD_DRIVER" // postgres or sqlite
	childDB     = "HERALD_GUARANTEES_CHILD_DB"
	childNATS   = "HERALD_GUARANTEES_CHILD_NATS"
	childStream = "HERALD_GUARANTEES_CHILD_STREAM"
	childPrefix = "HERALD_GUARANTEES_CHILD_PREFIX"
	childSlot   = "HERALD_GUARANTEES_CHILD_SLOT"  // with driver postgres-cdc
	childDelay  = "HERALD_GUARANTEES_CHILD_DELAY" // a pause before each publish, so that a backlog builds
)

func TestMain(m *testing.M) {
	if os.Getenv(childDriver) != "" {
		if err := runChildRelay(); err != nil {
			fmt.Fprintln(os.Stderr, "child relay:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, natsServerShutdownRace...)
}

// natsServerShutdownRace ignores the goroutines of a JetStream file store
// that an embedded NATS server creates while it shuts down: the outage test
// stops the server while the relay's publisher is bringing its stream up to
// date, and nats-server can finish that stream after its JetStream has
// stopped, leaving the store's flush loops behind. They belong to a server
// that is gone and hold no resource of Herald's.
var natsServerShutdownRace = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
	goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
	goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*msgBlock).flushLoop"),
}

func runChildRelay() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		store outbox.Store
		src   outbox.Source
	)
	switch os.Getenv(childDriver) {
	case "postgres", "postgres-cdc":
		pool, err := pgxpool.New(ctx, os.Getenv(childDB))
		if err != nil {
			return err
		}
		defer pool.Close()
		d, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
		if err != nil {
			return err
		}
		store = d
		if os.Getenv(childDriver) == "postgres-cdc" {
			cdc, err := pgcdc.New(d, os.Getenv(childDB), pgcdc.Config{
				Slot: os.Getenv(childSlot), Publication: os.Getenv(childSlot), RetryInterval: 20 * time.Millisecond,
			})
			if err != nil {
				return err
			}
			if err := cdc.Setup(ctx); err != nil {
				return err
			}
			src = cdc
		}
	case "sqlite":
		d, err := sqlitestore.Open(os.Getenv(childDB), sqlitestore.Config{Name: ordersvc.OutboxName})
		if err != nil {
			return err
		}
		defer func() { _ = d.Close() }()
		store = d
	default:
		return fmt.Errorf("unknown driver %q", os.Getenv(childDriver))
	}
	pub, err := natsjs.Connect(ctx, os.Getenv(childNATS), natsjs.Config{
		Stream: os.Getenv(childStream), SubjectPrefix: os.Getenv(childPrefix),
	})
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()
	if src == nil {
		src = store
	}
	var p outbox.Publisher = pub
	if d, err := time.ParseDuration(os.Getenv(childDelay)); err == nil {
		p = slowPublisher{Publisher: pub, delay: d}
	}
	relay := outbox.NewRelay(src, p, outbox.RelayConfig{
		BatchSize: 20, Workers: 2, PollInterval: 20 * time.Millisecond,
	})
	cdc, streams := src.(*pgcdc.Source)
	if !streams {
		fmt.Println(childReady)
		return relay.Run(ctx)
	}
	// A CDC relay is ready once it streams the slot: the killed child's
	// walsender may hold it a moment longer.
	go func() {
		for !cdc.Streaming() {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Println(childReady)
	}()
	return relay.Run(ctx)
}

// startChild starts a relay process on b's database and br's stream.
func startChild(t *testing.T, b *backend, br *broker, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// env comes last: os/exec keeps the last value of a variable.
	cmd.Env = append(append(os.Environ(),
		childDriver+"="+b.name,
		childDB+"="+b.url,
		childNATS+"="+br.url,
		childStream+"="+br.cfg.Stream,
		childPrefix+"="+br.cfg.SubjectPrefix,
	), env...)
	cmd.Stderr = os.Stderr
	dieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the child is connected to both ends, so that the kill
	// lands while it relays rather than while it starts.
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == childReady
		ready <- ok
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatal("child relay failed to start")
		}
	case <-time.After(waitLimit):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("child relay did not start")
	}
	return cmd
}

// childReady is the line a child relay prints once it is connected.
const childReady = "relay ready"
