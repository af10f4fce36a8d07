package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	hbroker "github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// ackRecorder is a Publisher that notes when the broker acknowledged each
// event: when the inner Publish, which awaits every ack of the batch,
// returned without an error for it.
type ackRecorder struct {
	outbox.Publisher
	onAck func(id uuid.UUID, at time.Time)
}

func (a ackRecorder) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := a.Publisher.Publish(ctx, msgs)
	now := time.Now()
	for i := range msgs {
		if i < len(errs) && errs[i] == nil {
			a.onAck(msgs[i].ID, now)
		}
	}
	return errs
}

// KeepsRuns passes on the wrapped publisher's answer (outbox.RunPublisher).
func (a ackRecorder) KeepsRuns() bool { return outbox.KeepsRuns(a.Publisher) }

// enqueuer writes one event in a transaction of its own and returns when the
// commit has returned.
type enqueuer func(ctx context.Context, e outbox.Event) error

// newEnqueuer returns the enqueuer of db: BEGIN; Client.EnqueueTx; COMMIT.
func newEnqueuer(db *database) enqueuer {
	if db.pg != nil {
		client := outbox.NewClient[pgx.Tx](db.pg)
		return func(ctx context.Context, e outbox.Event) error {
			err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
				_, err := client.EnqueueTx(ctx, tx, e)
				return err
			})
			if err == nil {
				db.pg.Notify() // the wake-up after the commit, as herald serve sends it
			}
			return err
		}
	}
	client := outbox.NewClient[*sql.Tx](db.sq)
	return func(ctx context.Context, e outbox.Event) error {
		return db.sq.WithTx(ctx, func(tx *sql.Tx) error {
			_, err := client.EnqueueTx(ctx, tx, e)
			return err
		})
	}
}

type latTrack struct {
	commit, ack, recv time.Time
	warm              bool // enqueued during the warm-up
}

// LatencyResult is the result of the latency mode.
type LatencyResult struct {
	Database, Broker string
	Rate             float64
	Achieved         float64
	Events           int64
	Errors           int64
	Enqueue          Summary // BEGIN … COMMIT of one event
	Ack, E2E         Summary // commit → broker ack, commit → consumer receipt
	Verify           VerifyReport
	Load             Load
	Duration         time.Duration
}

func runLatency(ctx context.Context, cfg Config) (*LatencyResult, error) {
	br, err := openBroker(cfg)
	if err != nil {
		return nil, err
	}
	defer br.Close()
	rc := relayConfig(cfg.App.Relay)
	rc.Logger = cfg.Logger.With("component", "relay")
	db, err := openDatabase(ctx, cfg, rc.Workers+cfg.Clients+4)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ep, err := newEndpoint(ctx, br)
	if err != nil {
		return nil, err
	}
	defer ep.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pub, err := ep.connect(cctx)
	cancel()
	if err != nil {
		return nil, err
	}
	defer func() { _ = pub.Close() }()

	var (
		mu     sync.Mutex
		tracks = make(map[uuid.UUID]*latTrack)
	)
	track := func(id uuid.UUID) *latTrack {
		t := tracks[id]
		if t == nil {
			t = &latTrack{}
			tracks[id] = t
		}
		return t
	}
	v := NewVerifier()
	cons, err := consume(ctx, ep, true, func(d hbroker.Delivery, at time.Time) {
		if d.Err != nil {
			v.Invalid()
			return
		}
		if v.Observe(d.Event.Subject, d.Event.Sequence) == Duplicate {
			return
		}
		id, err := uuid.Parse(d.Event.ID)
		if err != nil {
			v.Invalid()
			return
		}
		mu.Lock()
		track(id).recv = at
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	defer cons.Close()

	relay := outbox.NewRelay(db.store, ackRecorder{Publisher: pub, onAck: func(id uuid.UUID, at time.Time) {
		mu.Lock()
		track(id).ack = at
		mu.Unlock()
	}}, rc)
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = relay.Run(rctx)
	}()
	defer func() {
		stopRelay()
		<-relayDone
	}()

	res := &LatencyResult{Database: db.kind.String(), Broker: brokerName(br), Rate: cfg.Rate, Load: ReadLoad()}
	enqueue := newEnqueuer(db)
	prefix := "lat-" + randomHex(4) + "-"
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	total := int64(cfg.Duration / interval)
	var (
		next, sent, errs atomic.Int64
		enq              Samples
		wg               sync.WaitGroup
	)
	prog := StartProgress(cfg.Progress, func() (float64, string) {
		return float64(sent.Load()) / float64(total), fmt.Sprintf("latency: %d/%d events at %.0f/s, %d received, %d errors",
			sent.Load(), total, cfg.Rate, v.Received(), errs.Load())
	})
	start := time.Now()
	warmEnd := start.Add(cfg.Warmup)
	for range cfg.Clients {
		wg.Go(func() {
			for {
				k := next.Add(1) - 1
				if k >= total || ctx.Err() != nil {
					return
				}
				sleepUntil(ctx, start.Add(time.Duration(k)*interval))
				id, err := uuid.NewV7()
				if err != nil {
					errs.Add(1)
					continue
				}
				agg := fmt.Sprintf("%s%d", prefix, k)
				t0 := time.Now()
				err = enqueue(ctx, outbox.Event{
					ID: id, AggregateType: "order", AggregateID: agg, Type: "order.status_changed",
					Payload: []byte(benchPayload(agg, 1)), Headers: map[string]string{"traceparent": benchTraceparent},
				})
				now := time.Now()
				if err != nil {
					errs.Add(1)
					continue
				}
				enq.Add(now.Sub(t0))
				v.Expect(agg, 1)
				mu.Lock()
				t := track(id)
				t.commit, t.warm = now, t0.Before(warmEnd)
				mu.Unlock()
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	res.Duration = time.Since(start)
	cons.waitFor(ctx, cfg.DrainTimeout, func() bool { return v.Pending() == 0 })
	prog.Stop()

	res.Events, res.Errors = sent.Load(), errs.Load()
	res.Achieved = float64(res.Events) / res.Duration.Seconds()
	res.Enqueue = enq.Summary()
	res.Verify = v.Report()
	var ack, e2e []time.Duration
	mu.Lock()
	for _, t := range tracks {
		if t.warm || t.commit.IsZero() {
			continue
		}
		if !t.ack.IsZero() {
			ack = append(ack, max(t.ack.Sub(t.commit), 0))
		}
		if !t.recv.IsZero() {
			e2e = append(e2e, max(t.recv.Sub(t.commit), 0))
		}
	}
	mu.Unlock()
	res.Ack, res.E2E = summarize(ack), summarize(e2e)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, nil
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// WriteSummary writes the latency figures.
func (r *LatencyResult) WriteSummary(w io.Writer) error {
	p := &errWriter{w: w}
	p.printf("herald bench --mode latency: %s → %s, %.0f events/s asked, %.1f/s achieved, %d events, %d errors, load %s\n",
		r.Database, r.Broker, r.Rate, r.Achieved, r.Events, r.Errors, r.Load)
	p.printf("  enqueue transaction     %s\n", r.Enqueue)
	p.printf("  commit → broker ack     %s\n", r.Ack)
	p.printf("  commit → consumer       %s\n", r.E2E)
	p.printf("  verified: %d received, %d lost, %d reordered, %d duplicates\n", r.Verify.Received, r.Verify.Lost, r.Verify.Reordered, r.Verify.Duplicates)
	return p.err
}

// JSON returns the result's line.
func (r *LatencyResult) JSON() any {
	return map[string]any{
		"mode": ModeLatency, "db": r.Database, "broker": r.Broker,
		"rate": r.Rate, "achieved_rate": round2(r.Achieved), "events": r.Events, "errors": r.Errors,
		"enqueue_p50_ms": ms(r.Enqueue.P50), "enqueue_p99_ms": ms(r.Enqueue.P99),
		"ack_p50_ms": ms(r.Ack.P50), "ack_p99_ms": ms(r.Ack.P99), "ack_max_ms": ms(r.Ack.Max),
		"e2e_p50_ms": ms(r.E2E.P50), "e2e_p99_ms": ms(r.E2E.P99), "e2e_max_ms": ms(r.E2E.Max),
		"lost": r.Verify.Lost, "reordered": r.Verify.Reordered, "duplicates": r.Verify.Duplicates,
		"load1": r.Load.One,
	}
}

// Failure reports lost or reordered events and failed enqueues.
func (r *LatencyResult) Failure() error {
	var errs []error
	if !r.Verify.OK() {
		errs = append(errs, fmt.Errorf("%d events lost, %d reordered, %d unexpected, %d unreadable", r.Verify.Lost, r.Verify.Reordered, r.Verify.Unexpected, r.Verify.Invalid))
	}
	if r.Errors > 0 {
		errs = append(errs, fmt.Errorf("%d enqueue transactions failed", r.Errors))
	}
	return errors.Join(errs...)
}

// errWriter writes formatted text and keeps the first error.
type errWriter struct {
	w   io.Writer
	err error
}

func (p *errWriter) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
