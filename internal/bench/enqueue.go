package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// Enqueue variants. The headline is variantOutbox: the path the package
// docs, the README and examples/quickstart teach, and the one herald
// serve's orders take.
const (
	variantOutbox         = "outbox"              // Client.WithTx + EnqueueTx with the sequence the caller keeps (Event.Sequence): no counter row; the wake-up after the commit
	variantOutboxCounter  = "outbox_counter"      // the same with Sequence left zero: numbered by the outbox's counter row
	variantOutboxInTx     = "outbox_notify_in_tx" // PostgreSQL: counter row, pg_notify inside the writing transaction (pgstore.Config.NotifyInTx)
	variantOutboxNoNotify = "outbox_no_notify"    // PostgreSQL: counter row, no wake-up at all (pgstore.Config.DisableNotify)
	variantHand           = "hand_insert"         // the same row INSERTed by hand
)

// Each variant's --duration is cut into rounds of about enqueueSlice, and
// the variants take turns round by round, so that a drift of the machine's
// load or of the table's size falls on all of them alike. Many short rounds
// give many paired figures (library against hand_insert in the same round),
// whose spread shows how far one run can be trusted; a short --duration
// still gets enqueueMinRounds.
const (
	enqueueSlice     = 2 * time.Second
	enqueueMinRounds = 5
	enqueueWarmup    = time.Second // each variant's uncounted turn before the rounds
)

// EnqueueVariant is the figures of one way of writing the event.
type EnqueueVariant struct {
	Name     string         `json:"name"`
	Tx       int64          `json:"transactions"`
	Errors   int64          `json:"errors"`
	Seconds  float64        `json:"seconds"`
	TxPerSec float64        `json:"tx_per_sec"`
	P50ms    float64        `json:"p50_ms"`
	P99ms    float64        `json:"p99_ms"`
	Rounds   []EnqueueRound `json:"rounds"` // one per round, in round order
	// Embedded so that its keys sit in the variant's own JSON object; nil
	// for hand_insert, the reference.
	*EnqueueOverhead
	lat     Samples
	elapsed time.Duration
}

// EnqueueRound is what one variant did in one round.
type EnqueueRound struct {
	Tx      int64         `json:"transactions"`
	Seconds float64       `json:"seconds"`
	elapsed time.Duration // unrounded, for the rate
}

func (r EnqueueRound) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.Tx) / r.elapsed.Seconds()
}

// EnqueueOverhead is how much more a transaction costs through the library
// than by hand, in percent: hand rate / library rate − 1.
type EnqueueOverhead struct {
	Pct float64 `json:"overhead_pct"` // over the whole run, from the total rates
	// Each round's library rate against hand_insert's in the same round, and
	// their median and quartiles: the spread from round to round.
	RoundPct  []float64 `json:"overhead_round_pct"`
	MedianPct float64   `json:"overhead_median_pct"`
	P25Pct    float64   `json:"overhead_p25_pct"`
	P75Pct    float64   `json:"overhead_p75_pct"`
}

// String renders the overhead for people.
func (o *EnqueueOverhead) describe() string {
	return fmt.Sprintf("%.1f%% (per round: median %.1f%%, IQR %.1f–%.1f%%, %d rounds)",
		o.Pct, o.MedianPct, o.P25Pct, o.P75Pct, len(o.RoundPct))
}

// EnqueueResult is the result of the enqueue mode.
type EnqueueResult struct {
	Database string
	Clients  int
	Rounds   int
	Slice    time.Duration // each variant's time in one round
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
		// herald serve's relay listens through the driver its writers
		// notify, which wakes it in-process and paces the notifications
		// for other processes; a listener that ignores its wake-ups stands
		// in for it, without a relay's load on the machine.
		lctx, stopListening := context.WithCancel(ctx)
		listened := make(chan struct{})
		go func() {
			defer close(listened)
			_ = db.pg.Listen(lctx, func() {}) // a failed listener changes only the notifications' pace
		}()
		defer func() {
			stopListening()
			<-listened
		}()
		// through writes one event in Client.WithTx on driver d (which
		// sends the wake-up after the commit, unless d sends it inside the
		// transaction or not at all), numbered by the caller or not.
		through := func(name string, d *pgstore.Driver, numbered bool) writeTx {
			client := outbox.NewClient[pgx.Tx](d)
			return func(ctx context.Context, c, i int) error {
				return client.WithTx(ctx, func(tx pgx.Tx) error {
					e := event(name, c)
					if numbered {
						e.Sequence = int64(i)
					}
					_, err := client.EnqueueTx(ctx, tx, e)
					return err
				})
			}
		}
		variants[variantOutbox] = through(variantOutbox, db.pg, true)
		variants[variantOutboxCounter] = through(variantOutboxCounter, db.pg, false)
		inTx, err := pgstore.New(db.pool, pgstore.Config{Name: ordersvc.OutboxName, NotifyInTx: true})
		if err != nil {
			return nil, err
		}
		noNotify, err := pgstore.New(db.pool, pgstore.Config{Name: ordersvc.OutboxName, DisableNotify: true})
		if err != nil {
			return nil, err
		}
		variants[variantOutboxInTx] = through(variantOutboxInTx, inTx, false)
		variants[variantOutboxNoNotify] = through(variantOutboxNoNotify, noNotify, false)
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
		order = []string{variantOutbox, variantHand, variantOutboxCounter, variantOutboxInTx, variantOutboxNoNotify}
	} else {
		lib := outbox.NewClient[*sql.Tx](db.sq)
		through := func(name string, numbered bool) writeTx {
			return func(ctx context.Context, c, i int) error {
				return lib.WithTx(ctx, func(tx *sql.Tx) error {
					e := event(name, c)
					if numbered {
						e.Sequence = int64(i)
					}
					_, err := lib.EnqueueTx(ctx, tx, e)
					return err
				})
			}
		}
		variants[variantOutbox] = through(variantOutbox, true)
		variants[variantOutboxCounter] = through(variantOutboxCounter, false)
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
		order = []string{variantOutbox, variantHand, variantOutboxCounter}
	}
	for _, name := range order {
		res.Variants = append(res.Variants, &EnqueueVariant{Name: name})
	}

	res.Rounds = max(enqueueMinRounds, int(cfg.Duration/enqueueSlice))
	res.Slice = cfg.Duration / time.Duration(res.Rounds)
	counters := make([]int, cfg.Clients) // per variant and client: the next sequence
	next := map[string][]int{}
	for _, name := range order {
		next[name] = append([]int(nil), counters...)
	}
	var current atomic.Pointer[EnqueueVariant]
	var round atomic.Int64
	prog := StartProgress(cfg.Progress, func() (float64, string) {
		v := current.Load()
		if v == nil {
			return -1, "enqueue"
		}
		return -1, fmt.Sprintf("enqueue: round %d/%d, %s, %d transactions", round.Load()+1, res.Rounds, v.Name, atomic.LoadInt64(&v.Tx))
	})
	defer prog.Stop()
	// A warm-up turn of each variant, not counted, opens the connections and
	// prepares the statements, which the first round would pay for alone.
	for i, name := range order {
		warm := &EnqueueVariant{Name: res.Variants[i].Name}
		current.Store(warm)
		if err := runSlice(ctx, warm, variants[name], next[name], min(res.Slice, enqueueWarmup)); err != nil {
			return nil, err
		}
	}
	// Each round runs the variants in an order of its own, shuffled with a
	// fixed seed, so that no variant always comes first or always follows the
	// same one: the backlog one leaves (pg_notify in the transaction) or a
	// checkpoint falls on each alike.
	shuffle := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // a reproducible order, not a secret
	for r := range res.Rounds {
		round.Store(int64(r))
		for _, i := range shuffle.Perm(len(order)) {
			v := res.Variants[i]
			current.Store(v)
			if err := runSlice(ctx, v, variants[order[i]], next[order[i]], res.Slice); err != nil {
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
	hand := res.variant(variantHand)
	for _, v := range res.Variants {
		if v != hand {
			v.EnqueueOverhead = overheadOf(v, hand)
		}
	}
	return res, nil
}

// runSlice runs one variant with every client for d.
func runSlice(ctx context.Context, v *EnqueueVariant, tx writeTx, next []int, d time.Duration) error {
	sctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	tx0 := atomic.LoadInt64(&v.Tx)
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
	elapsed := time.Since(start)
	v.elapsed += elapsed
	v.Rounds = append(v.Rounds, EnqueueRound{Tx: atomic.LoadInt64(&v.Tx) - tx0, Seconds: round2(elapsed.Seconds()), elapsed: elapsed})
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

// overheadOf compares lib with hand over the whole run and round by round.
func overheadOf(lib, hand *EnqueueVariant) *EnqueueOverhead {
	o := &EnqueueOverhead{RoundPct: []float64{}}
	if hand == nil {
		return o
	}
	if lib.TxPerSec > 0 {
		o.Pct = round2((hand.TxPerSec/lib.TxPerSec - 1) * 100)
	}
	for i := range min(len(lib.Rounds), len(hand.Rounds)) {
		l, h := lib.Rounds[i].rate(), hand.Rounds[i].rate()
		if l == 0 || h == 0 {
			continue // a round without a transaction on either side compares nothing
		}
		o.RoundPct = append(o.RoundPct, round2((h/l-1)*100))
	}
	sorted := slices.Sorted(slices.Values(o.RoundPct))
	o.MedianPct = round2(quantile(sorted, 0.50))
	o.P25Pct = round2(quantile(sorted, 0.25))
	o.P75Pct = round2(quantile(sorted, 0.75))
	return o
}

// quantile returns the q-quantile (0 to 1) of sorted, interpolating between
// the two nearest values: with as few as 5 rounds, nearest rank would jump.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (pos-float64(lo))*(sorted[hi]-sorted[lo])
}

// overhead is the library variant's overhead over the whole run, in percent.
func (r *EnqueueResult) overhead(name string) float64 {
	if o := r.overheadFigures(name); o != nil {
		return o.Pct
	}
	return 0
}

// overheadFigures is the named library variant's overhead; nil if it did
// not run.
func (r *EnqueueResult) overheadFigures(name string) *EnqueueOverhead {
	if v := r.variant(name); v != nil {
		return v.EnqueueOverhead
	}
	return nil
}

// WriteSummary writes the rates and the overhead.
func (r *EnqueueResult) WriteSummary(w io.Writer) error {
	_, _ = fmt.Fprintf(w, "herald bench --mode enqueue: %s, %d clients, one event per transaction, %d rounds of %s per variant, load %s\n",
		r.Database, r.Clients, r.Rounds, r.Slice.Round(time.Millisecond), r.Load)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "variant\ttransactions\terrors\ttx/s\tp50 ms\tp99 ms\t")
	for _, v := range r.Variants {
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t\n", v.Name, v.Tx, v.Errors, v.TxPerSec, v.P50ms, v.P99ms)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	lines := []struct{ variant, label string }{
		{variantOutbox, "overhead of the documented path (Client.WithTx, EnqueueTx numbered from the caller's version, as herald serve's orders) over a hand-written INSERT of the same row"},
		{variantOutboxCounter, "  Sequence left zero: numbered by the outbox's counter row"},
		{variantOutboxInTx, "  counter row, pg_notify inside the transaction (pgstore NotifyInTx)"},
		{variantOutboxNoNotify, "  counter row, no wake-up (pgstore DisableNotify)"},
	}
	for _, l := range lines {
		if o := r.overheadFigures(l.variant); o != nil {
			if _, err := fmt.Fprintf(w, "%s: %s\n", l.label, o.describe()); err != nil {
				return err
			}
		}
	}
	return nil
}

// JSON returns the result's line. Its headline figures (overhead_pct and
// its spread, outbox_tx_per_sec) are those of the summary's first line: the
// documented path, events numbered by the caller.
func (r *EnqueueResult) JSON() any {
	j := map[string]any{
		"mode": ModeEnqueue, "db": r.Database, "clients": r.Clients,
		"rounds": r.Rounds, "round_seconds": round2(r.Slice.Seconds()),
		"overhead_pct": r.overhead(variantOutbox), "variants": r.Variants, "load1": r.Load.One,
	}
	if o := r.overheadFigures(variantOutbox); o != nil {
		j["overhead_median_pct"], j["overhead_p25_pct"], j["overhead_p75_pct"] = o.MedianPct, o.P25Pct, o.P75Pct
	}
	if v := r.variant(variantOutbox); v != nil {
		j["outbox_tx_per_sec"] = v.TxPerSec
	}
	if r.variant(variantOutboxCounter) != nil {
		j["overhead_counter_pct"] = r.overhead(variantOutboxCounter)
	}
	if v := r.variant(variantHand); v != nil {
		j["hand_tx_per_sec"] = v.TxPerSec
	}
	if r.variant(variantOutboxNoNotify) != nil {
		j["overhead_no_notify_pct"] = r.overhead(variantOutboxNoNotify)
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
