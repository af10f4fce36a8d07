package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgcdc"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// The cdc mode measures the change-data-capture relay against the polling
// relay in one run, each on a fresh schema and stream: the drain of a
// backlog written by concurrent writers, the commit → broker-ack latency at
// steady rates, and the write cost of deleting the row in the writing
// transaction, or of writing a message instead of a row, against keeping
// the row. The CDC relay runs twice in the drain and latency parts: on
// rows deleted in their transaction ("cdc") and on messages ("cdc-msg").

// writeStyle is how the bench's writers write an event.
type writeStyle string

const (
	keepRow    writeStyle = "keep"    // a row, kept for the relay
	deleteRow  writeStyle = "delete"  // a row deleted in its transaction (pgstore.Config.DeleteInTx)
	logMessage writeStyle = "message" // a logical decoding message (pgstore.Config.WALMessages)
)

// cdcKinds are the relays the drain and latency parts compare, each with
// the writers' style.
var cdcKinds = []struct {
	kind  string
	cdc   bool
	style writeStyle
}{
	{"poll", false, keepRow},
	{"cdc", true, deleteRow},
	{"cdc-msg", true, logMessage},
}

// cdcRates are the steady rates of the latency part, events/s.
var cdcRates = []float64{1000, 10000}

// CDCRun is one measurement of the cdc mode.
type CDCRun struct {
	Part         string  `json:"part"` // drain, latency or write
	Kind         string  `json:"kind"` // poll, cdc or cdc-msg (write: keep, delete or message)
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	Rate         float64 `json:"rate,omitempty"`
	P50ms        float64 `json:"p50_ms,omitempty"`
	P99ms        float64 `json:"p99_ms,omitempty"`
	Load1        float64 `json:"load1"`
}

// CDCResult is the result of the cdc mode.
type CDCResult struct {
	Workers, Batch, Writers int
	Runs                    []CDCRun
}

// JSON is the result's line.
func (r *CDCResult) JSON() any {
	out := map[string]any{"mode": ModeCDC, "workers": r.Workers, "batch": r.Batch, "writers": r.Writers, "runs": r.Runs}
	for key, v := range r.drainRatios() {
		out[key] = v
	}
	return out
}

func (r *CDCResult) find(part, kind string) *CDCRun {
	for i := range r.Runs {
		if r.Runs[i].Part == part && r.Runs[i].Kind == kind {
			return &r.Runs[i]
		}
	}
	return nil
}

// Failure is nil: the drain waits for every event, and the latency part
// counts what was acknowledged.
func (r *CDCResult) Failure() error { return nil }

// WriteSummary writes the table of runs.
func (r *CDCResult) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintf(tw, "cdc mode: relay workers %d, batch %d, writers %d\n", r.Workers, r.Batch, r.Writers)
	_, _ = fmt.Fprintln(tw, "part\tkind\tevents\tseconds\tevents/s\trate\tp50 ms\tp99 ms\tload1")
	for _, x := range r.Runs {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\n", x.Part, x.Kind, x.Events, x.Seconds, x.EventsPerSec, x.Rate, x.P50ms, x.P99ms, x.Load1)
	}
	ratios := r.drainRatios()
	for _, k := range cdcKinds[1:] {
		if v, ok := ratios[drainRatioKey(k.kind)]; ok {
			_, _ = fmt.Fprintf(tw, "drain: %s / poll = %v\n", k.kind, v)
		}
	}
	return tw.Flush()
}

// drainRatioKey is the JSON key of kind's drain ratio.
func drainRatioKey(kind string) string {
	return "drain_ratio_" + strings.ReplaceAll(kind, "-", "_") + "_over_poll"
}

// drainRatios are each CDC drain's rate over the polling relay's, keyed by
// drainRatioKey.
func (r *CDCResult) drainRatios() map[string]float64 {
	out := make(map[string]float64)
	p := r.find("drain", "poll")
	if p == nil || p.EventsPerSec <= 0 {
		return out
	}
	for _, k := range cdcKinds[1:] {
		if c := r.find("drain", k.kind); c != nil {
			out[drainRatioKey(k.kind)] = round2(c.EventsPerSec / p.EventsPerSec)
		}
	}
	return out
}

// runCDC runs the three parts.
func runCDC(ctx context.Context, cfg Config) (*CDCResult, error) {
	br, err := openBroker(cfg)
	if err != nil {
		return nil, err
	}
	defer br.Close()
	if br.url == "" || (br.kind != app.BrokerNATS && br.kind != app.BrokerEmbedded) {
		return nil, &app.UsageError{Err: errors.New("--mode cdc: the bench needs embedded or nats://")}
	}
	rc := relayConfig(cfg.App.Relay)
	res := &CDCResult{Workers: rc.Workers, Batch: rc.BatchSize, Writers: cfg.Clients}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			_, _ = fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	parts, err := cdcParts(cfg.Parts)
	if err != nil {
		return nil, err
	}
	styles := []writeStyle{keepRow, deleteRow, logMessage}
	if !parts["write"] {
		styles = nil
	}
	for _, style := range append(styles, styles...) {
		run, err := cdcWrite(ctx, cfg, style)
		if err != nil {
			return nil, err
		}
		progress("write %s: %.0f events/s, p50 %.2f ms, p99 %.2f ms", style, run.EventsPerSec, run.P50ms, run.P99ms)
		res.Runs = append(res.Runs, run)
	}
	for _, k := range cdcKinds {
		if !parts["drain"] {
			break
		}
		run, err := cdcDrain(ctx, cfg, br.url, k.kind, k.cdc, k.style)
		if err != nil {
			return nil, err
		}
		progress("drain %s: %d events in %.1fs, %.0f events/s", k.kind, run.Events, run.Seconds, run.EventsPerSec)
		res.Runs = append(res.Runs, run)
	}
	rates := cdcRates
	if cfg.Rate > 0 {
		rates = []float64{cfg.Rate}
	}
	if !parts["latency"] {
		rates = nil
	}
	for _, rate := range rates {
		for _, k := range cdcKinds {
			run, err := cdcLatency(ctx, cfg, br.url, k.kind, k.cdc, k.style, rate)
			if err != nil {
				return nil, err
			}
			progress("latency %s at %.0f/s: %.0f events/s written, p50 %.2f ms, p99 %.2f ms", k.kind, rate, run.EventsPerSec, run.P50ms, run.P99ms)
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

// cdcParts checks --parts: empty means every part.
func cdcParts(names []string) (map[string]bool, error) {
	all := []string{"write", "drain", "latency"}
	if len(names) == 0 {
		names = all
	}
	parts := make(map[string]bool)
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, &app.UsageError{Err: fmt.Errorf("--parts: unknown part %q: use write, drain or latency", n)}
		}
		parts[n] = true
	}
	return parts, nil
}

// cdcEnv is a fresh schema with the outbox migrated, and for CDC a slot.
type cdcEnv struct {
	url    string
	pool   *pgxpool.Pool
	writer *pgstore.Driver // the writers' driver, in the env's write style
	store  *pgstore.Driver
	src    outbox.Source
	close  cleanups
}

func openCDCEnv(ctx context.Context, cfg Config, cdc bool, style writeStyle) (_ *cdcEnv, err error) {
	e := &cdcEnv{}
	defer func() {
		if err != nil {
			e.close.run()
		}
	}()
	url, schema, drop, err := freshSchema(ctx, cfg.App.DatabaseURL)
	if err != nil {
		return nil, err
	}
	e.url = url
	e.close.add(drop)
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = int32(cfg.Clients + 8) //nolint:gosec // a small number
	if e.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, err
	}
	e.close.add(e.pool.Close)
	if e.store, err = pgstore.New(e.pool, pgstore.Config{Name: "order_outbox"}); err != nil {
		return nil, err
	}
	if err := e.store.Migrate(ctx); err != nil {
		return nil, err
	}
	e.writer = e.store
	if style != keepRow {
		wc := pgstore.Config{Name: "order_outbox", DeleteInTx: style == deleteRow, WALMessages: style == logMessage}
		if e.writer, err = pgstore.New(e.pool, wc); err != nil {
			return nil, err
		}
	}
	e.src = e.store
	if cdc {
		slot := schema // herald_bench_…: recognisable, and dropped below
		src, err := pgcdc.New(e.store, url, pgcdc.Config{Slot: slot, Publication: slot, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		e.close.add(func() {
			cctx, cancel := cleanupCtx()
			defer cancel()
			for range 50 { // the walsender may still be going away
				if err := src.DropSlot(cctx); err == nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		if err := src.Setup(ctx); err != nil {
			return nil, err
		}
		e.src = src
	}
	return e, nil
}

// write writes one transaction of n events of aggregate agg and returns
// their ids.
func (e *cdcEnv) write(ctx context.Context, agg string, n int) ([]uuid.UUID, error) {
	client := outbox.NewClient[pgx.Tx](e.writer)
	events := make([]outbox.Event, n)
	ids := make([]uuid.UUID, n)
	for i := range events {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		ids[i] = id
		events[i] = outbox.Event{ID: id, AggregateType: "order", AggregateID: agg, Type: "order.status_changed",
			Payload: []byte(`{"order_id":"` + agg + `","from":"pending","to":"payment_confirmed","actor":"bench"}`)}
	}
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		_, err := client.EnqueueTx(ctx, tx, events...)
		return err
	})
	if err == nil && e.src == outbox.Source(e.store) {
		// Wake the polling relay after the commit, as herald serve does;
		// without it the relay finds events only at its poll interval.
		e.store.Notify()
	}
	return ids, err
}

// cdcWrite measures writers enqueueing transactions of two events in the
// given style, for cfg.Duration/4.
func cdcWrite(ctx context.Context, cfg Config, style writeStyle) (CDCRun, error) {
	e, err := openCDCEnv(ctx, cfg, false, style)
	if err != nil {
		return CDCRun{}, err
	}
	defer e.close.run()
	var (
		mu   sync.Mutex
		lats []time.Duration
		n    atomic.Int64
	)
	wctx, cancel := context.WithTimeout(ctx, max(cfg.Duration/4, time.Second))
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Clients)
	for w := range cfg.Clients {
		wg.Go(func() {
			var mine []time.Duration
			for i := 0; wctx.Err() == nil; i++ {
				t := time.Now()
				if _, err := e.write(wctx, fmt.Sprintf("w%d-%d", w, i%50), 2); err != nil {
					if wctx.Err() == nil {
						errs <- err
					}
					break
				}
				mine = append(mine, time.Since(t))
				n.Add(2)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	select {
	case err := <-errs:
		return CDCRun{}, err
	default:
	}
	s := summarize(lats)
	return CDCRun{Part: "write", Kind: string(style), Events: int(n.Load()), Seconds: round2(secs), EventsPerSec: round2(float64(n.Load()) / secs),
		P50ms: ms(s.P50), P99ms: ms(s.P99), Load1: ReadLoad().One}, nil
}

// cdcDrain writes cfg.Events events with cfg.Clients concurrent writers,
// then starts the relay and times it until every event is acknowledged.
func cdcDrain(ctx context.Context, cfg Config, natsURL, kind string, cdc bool, style writeStyle) (CDCRun, error) {
	e, err := openCDCEnv(ctx, cfg, cdc, style)
	if err != nil {
		return CDCRun{}, err
	}
	defer e.close.run()
	aggs := cfg.Aggregates
	if aggs <= 0 {
		aggs = max(cfg.Events/10, 1)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Clients)
	for range cfg.Clients {
		wg.Go(func() {
			for {
				i := next.Add(2) - 2
				if i >= int64(cfg.Events) {
					return
				}
				n := int(min(2, int64(cfg.Events)-i))
				if _, err := e.write(ctx, fmt.Sprintf("a%06d", (i/2)%int64(aggs)), n); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return CDCRun{}, err
	default:
	}
	// Each drain starts from a fresh checkpoint, so that none pays for
	// flushing the backlog's writes while it is timed. Only a superuser
	// (or pg_checkpoint) may; without it the drain runs as it is.
	if _, err := e.pool.Exec(ctx, "CHECKPOINT"); err != nil && cfg.Logger != nil {
		cfg.Logger.Warn("bench: CHECKPOINT before the drain", "err", err)
	}
	ep := natsEndpoint(natsURL, uniqueStream())
	defer ep.Close()
	pub, err := ep.connect(ctx)
	if err != nil {
		return CDCRun{}, err
	}
	defer func() { _ = pub.Close() }()
	rc := relayConfig(cfg.App.Relay)
	relay := outbox.NewRelay(e.src, pub, rc)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- relay.Run(rctx) }()
	for relay.Counters().Published < uint64(cfg.Events) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	secs := time.Since(start).Seconds()
	load := ReadLoad().One
	cancel()
	if err := <-done; err != nil {
		return CDCRun{}, err
	}
	return CDCRun{Part: "drain", Kind: kind, Events: cfg.Events, Seconds: round2(secs),
		EventsPerSec: round2(float64(cfg.Events) / secs), Load1: load}, ctx.Err()
}

// ackClock records when the broker acknowledged each event.
type ackClock struct {
	outbox.Publisher
	mu  sync.Mutex
	ack map[uuid.UUID]time.Time
}

func (a *ackClock) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := a.Publisher.Publish(ctx, msgs)
	now := time.Now()
	a.mu.Lock()
	for i, m := range msgs {
		if i < len(errs) && errs[i] == nil {
			if _, ok := a.ack[m.ID]; !ok {
				a.ack[m.ID] = now
			}
		}
	}
	a.mu.Unlock()
	return errs
}

// cdcLatency writes at a steady rate for cfg.Duration with the relay
// running, and measures each event's time from its writer's commit to its
// broker acknowledgement.
func cdcLatency(ctx context.Context, cfg Config, natsURL, kind string, cdc bool, style writeStyle, rate float64) (CDCRun, error) {
	e, err := openCDCEnv(ctx, cfg, cdc, style)
	if err != nil {
		return CDCRun{}, err
	}
	defer e.close.run()
	ep := natsEndpoint(natsURL, uniqueStream())
	defer ep.Close()
	inner, err := ep.connect(ctx)
	if err != nil {
		return CDCRun{}, err
	}
	defer func() { _ = inner.Close() }()
	pub := &ackClock{Publisher: inner, ack: make(map[uuid.UUID]time.Time)}
	relay := outbox.NewRelay(e.src, pub, relayConfig(cfg.App.Relay))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && cfg.Logger != nil {
			cfg.Logger.Warn("bench: relay", "err", err)
		}
	}()
	if c, ok := e.src.(*pgcdc.Source); ok {
		for !c.Streaming() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Transactions of perTx events, rate/perTx of them per second over the
	// writers, each writer on its own ticker.
	perTx := max(1, int(rate/1000))
	txPerWriter := rate / float64(perTx) / float64(cfg.Clients)
	interval := time.Duration(float64(time.Second) / txPerWriter)
	var (
		mu     sync.Mutex
		commit = make(map[uuid.UUID]time.Time)
		n      atomic.Int64
		wg     sync.WaitGroup
	)
	wctx, wcancel := context.WithTimeout(ctx, cfg.Duration)
	defer wcancel()
	start := time.Now()
	warm := start.Add(cfg.Duration / 10) // the first tenth warms up
	for w := range cfg.Clients {
		wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
				}
				ids, err := e.write(wctx, fmt.Sprintf("l%d-%d", w, i%100), perTx)
				if err != nil {
					return
				}
				at := time.Now()
				n.Add(int64(len(ids)))
				if at.Before(warm) {
					continue
				}
				mu.Lock()
				for _, id := range ids {
					commit[id] = at
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	load := ReadLoad().One
	// Wait for the last acknowledgements.
	deadline := time.Now().Add(30 * time.Second)
	for relay.Counters().Published < uint64(n.Load()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pub.mu.Lock()
	lats := make([]time.Duration, 0, len(commit))
	for id, c := range commit {
		if a, ok := pub.ack[id]; ok {
			lats = append(lats, max(a.Sub(c), 0))
		}
	}
	pub.mu.Unlock()
	s := summarize(lats)
	return CDCRun{Part: "latency", Kind: kind, Events: int(n.Load()), Seconds: round2(secs), Rate: rate,
		EventsPerSec: round2(float64(n.Load()) / secs), P50ms: ms(s.P50), P99ms: ms(s.P99), Load1: load}, nil
}
