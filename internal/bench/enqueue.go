package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// Enqueue variants.
const (
	variantOutbox         = "outbox"              // Client.EnqueueTx, as herald serve runs it (PostgreSQL: wake-up after the commit)
	variantOutboxNumbered = "outbox_caller_seq"   // the same with the sequence the caller keeps (Event.Sequence): no counter row
	variantOutboxInTx     = "outbox_notify_in_tx" // PostgreSQL: pg_notify inside the writing transaction (pgstore's default)
	variantOutboxNoNotify = "outbox_no_notify"    // PostgreSQL: no wake-up at all (pgstore.Config.DisableNotify)
	variantHand           = "hand_insert"         // the same row INSERTed by hand
)

// enqueueRounds is how many slices each variant's time is cut into; the
// variants take turns slice by slice, so that a drift of the machine's load
// or of the table's size falls on all of them alike.
const enqueueRounds = 5

// EnqueueVariant is the figures of one way of writing the event.
type EnqueueVariant struct {
	Name     string  `json:"name"`
	Tx       int64   `json:"transactions"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	TxPerSec float64 `json:"tx_per_sec"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	lat      Samples
	elapsed  time.Duration
}

// EnqueueResult is the result of the enqueue mode.
type EnqueueResult struct {
	Database string
	Clients  int
	Variants []*EnqueueVariant
	Load     Load
}

// writeTx is one transaction of a variant by client c, its i-th.
type writeTx func(ctx context.Context, c, i int) error

func runEnqueue(ctx context.Context, cfg Config) (*EnqueueResult, error) {
	db, err := openDatabase(ctx, cfg, cfg.Clients+2)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	res := &EnqueueResult{Database: db.kind.String(), Clients: cfg.Clients, Load: ReadLoad()}
	prefix := "enq-" + randomHex(4) + "-"
	headers := map[string]string{"traceparent": benchTraceparent}
	headerJSON := `{"traceparent":"` + benchTraceparent + `"}`
	agg := func(variant string, c int) string { return fmt.Sprintf("%s%s-%d", prefix, variant, c) }
	event := func(variant string, c int) outbox.Event {
		a := agg(variant, c)
		return outbox.Event{AggregateType: "order", AggregateID: a, Type: "order.status_changed",
			Payload: []byte(benchPayload(a, 1)), Headers: headers}
	}

	variants := map[string]writeTx{}
	var order []string
	if db.pg != nil {
		// through writes one event with client on driver d, numbered by the
		// caller or not, and sends the wake-up after the commit when d
		// defers it (NotifyAfterCommit; a no-op otherwise).
		through := func(name string, d *pgstore.Driver, numbered bool) writeTx {
			client := outbox.NewClient[pgx.Tx](d)
			return func(ctx context.Context, c, i int) error {
				err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
					e := event(name, c)
					if numbered {
						e.Sequence = int64(i)
					}
					_, err := client.EnqueueTx(ctx, tx, e)
					return err
				})
				if err == nil {
					d.Notify()
				}
				return err
			}
		}
		variants[variantOutbox] = through(variantOutbox, db.pg, false)
		variants[variantOutboxNumbered] = through(variantOutboxNumbered, db.pg, true)
		variants[variantOutboxInTx] = through(variantOutboxInTx, pgstore.New(db.pool, pgstore.Config{}), false)
		variants[variantOutboxNoNotify] = through(variantOutboxNoNotify, pgstore.New(db.pool, pgstore.Config{DisableNotify: true}), false)
		variants[variantHand] = func(ctx context.Context, c, i int) error {
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			a := agg(variantHand, c)
			return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, sequence)
					VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)`,
					id, "order", a, "order.status_changed", benchPayload(a, 1), headerJSON, i)
				return err
			})
		}
		order = []string{variantOutbox, variantHand, variantOutboxNumbered, variantOutboxInTx, variantOutboxNoNotify}
	} else {
		lib := outbox.NewClient[*sql.Tx](db.sq)
		variants[variantOutbox] = func(ctx context.Context, c, _ int) error {
			return db.sq.WithTx(ctx, func(tx *sql.Tx) error {
				_, err := lib.EnqueueTx(ctx, tx, event(variantOutbox, c))
				return err
			})
		}
		variants[variantHand] = func(ctx context.Context, c, i int) error {
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			a := agg(variantHand, c)
			now := time.Now().UnixMicro()
			head := 0
			if i == 1 {
				head = 1 // no relay runs: the client's first event stays its aggregate's head
			}
			return db.sq.WithTx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, next_attempt_at, created_at, head)
					VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)`,
					id.String(), "order", a, "order.status_changed", benchPayload(a, 1), headerJSON, i, now, head)
				return err
			})
		}
		variants[variantOutboxNumbered] = func(ctx context.Context, c, i int) error {
			return db.sq.WithTx(ctx, func(tx *sql.Tx) error {
				e := event(variantOutboxNumbered, c)
				e.Sequence = int64(i)
				_, err := lib.EnqueueTx(ctx, tx, e)
				return err
			})
		}
		order = []string{variantOutbox, variantHand, variantOutboxNumbered}
	}
	for _, name := range order {
		res.Variants = append(res.Variants, &EnqueueVariant{Name: name})
	}

	slice := cfg.Duration / enqueueRounds
	counters := make([]int, cfg.Clients) // per variant and client: the next sequence
	next := map[string][]int{}
	for _, name := range order {
		next[name] = append([]int(nil), counters...)
	}
	var current atomic.Pointer[EnqueueVariant]
	prog := StartProgress(cfg.Progress, func() (float64, string) {
		v := current.Load()
		if v == nil {
			return -1, "enqueue"
		}
		return -1, fmt.Sprintf("enqueue: %s, %d transactions", v.Name, atomic.LoadInt64(&v.Tx))
	})
	defer prog.Stop()
	for range enqueueRounds {
		for i, name := range order {
			v := res.Variants[i]
			current.Store(v)
			if err := runSlice(ctx, v, variants[name], next[name], slice); err != nil {
				return nil, err
			}
		}
	}
	prog.Stop()
	for _, v := range res.Variants {
		s := v.lat.Summary()
		v.Seconds = round2(v.elapsed.Seconds())
		v.TxPerSec = round2(float64(v.Tx) / v.elapsed.Seconds())
		v.P50ms, v.P99ms = ms(s.P50), ms(s.P99)
	}
	return res, nil
}

// runSlice runs one variant with every client for d.
func runSlice(ctx context.Context, v *EnqueueVariant, tx writeTx, next []int, d time.Duration) error {
	sctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for c := range next {
		wg.Go(func() {
			for sctx.Err() == nil {
				next[c]++
				t0 := time.Now()
				// The transaction runs to its end even when the slice ends
				// during it, so that no sequence is left half used.
				err := tx(context.WithoutCancel(sctx), c, next[c])
				if err != nil {
					atomic.AddInt64(&v.Errors, 1)
					next[c]-- // rolled back: the number is free again
					continue
				}
				v.lat.Add(time.Since(t0))
				atomic.AddInt64(&v.Tx, 1)
			}
		})
	}
	wg.Wait()
	v.elapsed += time.Since(start)
	return ctx.Err()
}

func (r *EnqueueResult) variant(name string) *EnqueueVariant {
	for _, v := range r.Variants {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// overhead is how much more a transaction costs through the library than by
// hand, in percent: hand rate / library rate − 1.
func (r *EnqueueResult) overhead(name string) float64 {
	lib, hand := r.variant(name), r.variant(variantHand)
	if lib == nil || hand == nil || lib.TxPerSec == 0 {
		return 0
	}
	return round2((hand.TxPerSec/lib.TxPerSec - 1) * 100)
}

// WriteSummary writes the rates and the overhead.
func (r *EnqueueResult) WriteSummary(w io.Writer) error {
	_, _ = fmt.Fprintf(w, "herald bench --mode enqueue: %s, %d clients, one event per transaction, load %s\n", r.Database, r.Clients, r.Load)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "variant\ttransactions\terrors\ttx/s\tp50 ms\tp99 ms\t")
	for _, v := range r.Variants {
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t\n", v.Name, v.Tx, v.Errors, v.TxPerSec, v.P50ms, v.P99ms)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "overhead of Client.EnqueueTx over a hand-written INSERT: %.1f%%\n", r.overhead(variantOutbox))
	if err == nil && r.variant(variantOutboxNumbered) != nil {
		_, err = fmt.Fprintf(w, "  with the caller's sequence (Event.Sequence, no counter row): %.1f%%\n", r.overhead(variantOutboxNumbered))
	}
	if err == nil && r.variant(variantOutboxInTx) != nil {
		_, err = fmt.Fprintf(w, "  with pg_notify inside the transaction (pgstore's default): %.1f%%\n", r.overhead(variantOutboxInTx))
	}
	if err == nil && r.variant(variantOutboxNoNotify) != nil {
		_, err = fmt.Fprintf(w, "  without pg_notify (pgstore DisableNotify): %.1f%%\n", r.overhead(variantOutboxNoNotify))
	}
	return err
}

// JSON returns the result's line.
func (r *EnqueueResult) JSON() any {
	j := map[string]any{
		"mode": ModeEnqueue, "db": r.Database, "clients": r.Clients,
		"overhead_pct": r.overhead(variantOutbox), "variants": r.Variants, "load1": r.Load.One,
	}
	if v := r.variant(variantOutbox); v != nil {
		j["outbox_tx_per_sec"] = v.TxPerSec
	}
	if v := r.variant(variantHand); v != nil {
		j["hand_tx_per_sec"] = v.TxPerSec
	}
	if r.variant(variantOutboxNoNotify) != nil {
		j["overhead_no_notify_pct"] = r.overhead(variantOutboxNoNotify)
	}
	if r.variant(variantOutboxNumbered) != nil {
		j["overhead_caller_seq_pct"] = r.overhead(variantOutboxNumbered)
	}
	if r.variant(variantOutboxInTx) != nil {
		j["overhead_notify_in_tx_pct"] = r.overhead(variantOutboxInTx)
	}
	return j
}

// Failure reports failed transactions.
func (r *EnqueueResult) Failure() error {
	var errs []error
	for _, v := range r.Variants {
		if v.Errors > 0 {
			errs = append(errs, fmt.Errorf("%s: %d transactions failed", v.Name, v.Errors))
		}
	}
	return errors.Join(errs...)
}
