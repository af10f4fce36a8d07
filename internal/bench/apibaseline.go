package bench

import (
	"context"
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
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	hbroker "github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/pgorders"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// The api-baseline mode writes what the full mode's requests write, with
// the statements herald serve's API sends for them (captured with
// PostgreSQL's log_statement; docs/BENCHMARKS.md, "API write path"), by
// hand: one raw pgx transaction per request, no HTTP, no service layer, the
// statements prepared once per connection (pgx's statement cache), ids sent
// as binary [16]byte (not through uuid.UUID's driver.Valuer, which formats
// and parses text), and the statements of one round trip sent as one
// pgx.Batch.
//
//	create:        BEGIN; [order, line items, audit row, outbox row]; COMMIT
//	status change: BEGIN; [lock the order, read its items];
//	               [update the order (version check), update the moved items,
//	                audit rows, outbox rows]; COMMIT
//
// The statements are the API's own text, so that each costs PostgreSQL what
// it costs the API; what differs is everything around them. Unless
// Config.NoRelay, Herald's relay runs beside the writers, woken after each
// commit (Driver.Notify, as a hand-writer using the outbox library would),
// publishing to a namespace of the bench's own, and a consumer verifies the
// events and times commit → receipt: the full mode's background, so that
// api-compare compares the write paths alone.
const (
	rawInsertOrderSQL = `
INSERT INTO orders (id, customer_id, currency, status, total_amount, version, created_at, updated_at, last_event_sequence)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

	rawInsertItemsSQL = `
INSERT INTO order_line_items (id, order_id, line_no, product_id, product_type, quantity, unit_price, status)
SELECT u.id, $1, u.line_no - 1, u.product_id, u.product_type, u.quantity, u.unit_price, u.status
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
	WITH ORDINALITY AS u(id, product_id, product_type, quantity, unit_price, status, line_no)`

	rawInsertTransitionsSQL = `
INSERT INTO order_status_transitions
	(order_id, line_item_id, from_status, to_status, reason, actor, automatic, event_id, created_at)
SELECT u.order_id, u.line_item_id, u.from_status, u.to_status, u.reason, u.actor, u.automatic, u.event_id, u.created_at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[],
	$8::uuid[], $9::timestamptz[])
	WITH ORDINALITY AS u(order_id, line_item_id, from_status, to_status, reason, actor, automatic,
	event_id, created_at, ord)
ORDER BY u.ord`

	rawInsertEventSQL = `
INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, idempotency_key, sequence)
VALUES ($1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)`

	rawLockOrderSQL = `SELECT o.id, o.customer_id, o.currency, o.status, o.total_amount, o.version, o.created_at, o.updated_at, o.last_event_sequence FROM orders o WHERE o.id = $1 FOR UPDATE`

	rawLoadItemsSQL = `SELECT li.id, li.product_id, li.product_type, li.quantity, li.unit_price, li.status FROM order_line_items li WHERE li.order_id = $1 ORDER BY li.line_no`

	rawUpdateOrderSQL = `
UPDATE orders SET status = $2, total_amount = $3, version = $4, updated_at = $5, last_event_sequence = $6
WHERE id = $1 AND version = $4 - 1`

	rawUpdateItemsSQL = `
UPDATE order_line_items li SET status = u.status
FROM unnest($2::uuid[], $3::text[]) AS u(id, status)
WHERE li.id = u.id AND li.order_id = $1`
)

// rawActor is the actor the API records for a request without a token, as
// the full mode's requests are made.
const rawActor = httpapi.ActorAnonymous

// APIBaselineResult is the result of the api-baseline mode.
type APIBaselineResult struct {
	Database    string
	Workload    string
	Concurrency int
	Rate        float64
	Orders      int64
	Requests    int64
	Errors      int64
	ErrorKinds  map[string]int64
	Events      int64 // outbox rows the transactions wrote
	OutboxRows  int64 // outbox rows found at the end (NoRelay)
	Broker      string
	Relayed     bool
	Verify      VerifyReport // the relayed events, read back
	E2E         Summary      // commit → consumer receipt
	// E2EFirst is E2E of the first event of each transaction, E2ELater of
	// the others: the relay publishes one aggregate's events in order, and
	// the later events of a transaction wait for the earlier ones.
	E2EFirst, E2ELater Summary
	Duration           time.Duration
	Tx                 Summary // request (transaction) latency, all kinds
	PerKind            map[string]Summary
	Load               Load
	LoadAfter          Load
}

// RequestsPerSec is the rate of committed requests.
func (r *APIBaselineResult) RequestsPerSec() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Duration.Seconds()
}

type rawRun struct {
	cfg  Config
	pool *pgxpool.Pool

	tx       Samples
	perKind  map[string]*Samples
	errKinds sync.Map

	created, requests, errors, events, started atomic.Int64
	pace                                       *pacer

	// With the relay: the verifier of the events read back, and when each
	// event committed and arrived.
	v      *Verifier
	notify func()
	mu     sync.Mutex
	tracks map[uuid.UUID]*rawTrack
}

// rawTrack is when one event committed and arrived, and its place among
// the events of its transaction.
type rawTrack struct {
	commit, recv time.Time
	pos          int
}

func (r *rawRun) track(id uuid.UUID) *rawTrack {
	t := r.tracks[id]
	if t == nil {
		t = &rawTrack{}
		r.tracks[id] = t
	}
	return t
}

// committed records the commit of an order's events, at, and wakes the
// relay.
func (r *rawRun) committed(orderID uuid.UUID, events []uuid.UUID, at time.Time) {
	r.events.Add(int64(len(events)))
	if r.v == nil {
		return
	}
	r.notify()
	r.v.Expect(orderID.String(), int64(len(events)))
	r.mu.Lock()
	for i, id := range events {
		t := r.track(id)
		t.commit, t.pos = at, i
	}
	r.mu.Unlock()
}

// startRelay runs Herald's relay from db to a namespace of the bench's own
// and a consumer of it; stop ends both.
func (r *rawRun) startRelay(ctx context.Context, cfg Config, db *database) (stop func(), broker string, cons *consumer, err error) {
	var c cleanups
	defer func() {
		if err != nil {
			c.run()
		}
	}()
	br, err := openBroker(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	c.add(br.Close)
	ep, err := newEndpoint(ctx, br)
	if err != nil {
		return nil, "", nil, err
	}
	c.add(ep.Close)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pub, err := ep.connect(cctx)
	cancel()
	if err != nil {
		return nil, "", nil, err
	}
	c.add(func() { _ = pub.Close() })
	r.v, r.tracks, r.notify = NewVerifier(), make(map[uuid.UUID]*rawTrack), db.pg.Notify
	cons, err = consume(ctx, ep, true, func(d hbroker.Delivery, at time.Time) {
		if d.Err != nil {
			r.v.Invalid()
			return
		}
		if r.v.Observe(d.Event.Subject, d.Event.Sequence) == Duplicate {
			return
		}
		id, err := uuid.Parse(d.Event.ID)
		if err != nil {
			r.v.Invalid()
			return
		}
		r.mu.Lock()
		r.track(id).recv = at
		r.mu.Unlock()
	})
	if err != nil {
		return nil, "", nil, err
	}
	c.add(cons.Close)
	rc := relayConfig(cfg.App.Relay)
	rc.Logger = quietLogger(cfg.Logger).With("component", "relay")
	relay := outbox.NewRelay(db.store, pub, rc)
	rctx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Run(rctx)
	}()
	c.add(func() {
		stopRelay()
		<-done
	})
	return c.run, brokerLabel(br), cons, nil
}

func runAPIBaseline(ctx context.Context, cfg Config) (*APIBaselineResult, error) {
	db, err := openDatabase(ctx, cfg, cfg.Concurrency+relayConfig(cfg.App.Relay).Workers+4)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if db.pool == nil {
		return nil, errors.New("bench: api-baseline runs on PostgreSQL only")
	}
	// The orders' tables, as herald serve migrates them.
	if err := pgorders.New(db.pool, outbox.NewClient[pgx.Tx](db.pg)).Migrate(ctx); err != nil {
		return nil, err
	}
	r := &rawRun{cfg: cfg, pool: db.pool, perKind: make(map[string]*Samples)}
	for _, k := range requestKinds {
		r.perKind[k] = &Samples{}
	}
	res := &APIBaselineResult{Database: db.kind.String(), Workload: cfg.Workload, Concurrency: cfg.Concurrency,
		Rate: cfg.Rate, Relayed: !cfg.NoRelay}
	var cons *consumer
	if !cfg.NoRelay {
		stop, broker, c, err := r.startRelay(ctx, cfg, db)
		if err != nil {
			return nil, err
		}
		defer stop()
		res.Broker, cons = broker, c
	}
	res.Load = ReadLoad()
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64() //nolint:gosec // a workload's seed, not a secret
	}
	start := time.Now()
	prog := StartProgress(cfg.Progress, func() (float64, string) {
		frac := -1.0
		if cfg.Orders > 0 {
			frac = float64(r.created.Load()) / float64(cfg.Orders)
		}
		req := r.requests.Load()
		return frac, fmt.Sprintf("api-baseline: %d orders  %d requests (%.0f/s)  %d errors",
			r.created.Load(), req, float64(req)/max(time.Since(start).Seconds(), 1e-3), r.errors.Load())
	})
	defer prog.Stop()
	deadline := start.Add(cfg.Duration)
	r.pace = newPacer(cfg.Rate)
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		p := plan{rng: rand.New(rand.NewPCG(seed, uint64(w)))} //nolint:gosec // workload randomness
		wg.Go(func() { r.worker(ctx, p, w, deadline) })
	}
	wg.Wait()
	res.Duration = time.Since(start)
	res.LoadAfter = ReadLoad()
	if cons != nil {
		cons.waitFor(ctx, cfg.DrainTimeout, func() bool { return r.v.Pending() == 0 })
		res.Verify = r.v.Report()
		var e2e, first, later []time.Duration
		r.mu.Lock()
		for _, t := range r.tracks {
			if !t.commit.IsZero() && !t.recv.IsZero() {
				d := max(t.recv.Sub(t.commit), 0)
				e2e = append(e2e, d)
				if t.pos == 0 {
					first = append(first, d)
				} else {
					later = append(later, d)
				}
			}
		}
		r.mu.Unlock()
		res.E2E, res.E2EFirst, res.E2ELater = summarize(e2e), summarize(first), summarize(later)
	}
	prog.Stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if cons == nil {
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM order_outbox`).Scan(&res.OutboxRows); err != nil {
			return nil, fmt.Errorf("bench: count the outbox: %w", err)
		}
	}
	res.Orders, res.Requests, res.Errors, res.Events = r.created.Load(), r.requests.Load(), r.errors.Load(), r.events.Load()
	res.Tx = r.tx.Summary()
	res.PerKind = make(map[string]Summary)
	for k, s := range r.perKind {
		if s.Len() > 0 {
			res.PerKind[k] = s.Summary()
		}
	}
	res.ErrorKinds = make(map[string]int64)
	r.errKinds.Range(func(k, v any) bool {
		res.ErrorKinds[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return res, nil
}

func (r *rawRun) more(ctx context.Context, deadline time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	if r.cfg.Orders > 0 {
		return r.started.Add(1) <= int64(r.cfg.Orders)
	}
	return time.Now().Before(deadline)
}

// worker makes the full mode's worker's orders and walks, drawn from the
// same plan: with the same seed, the same mix of requests.
func (r *rawRun) worker(ctx context.Context, p plan, w int, deadline time.Time) {
	for n := 0; r.more(ctx, deadline); n++ {
		req := p.createRequest(fmt.Sprintf("bench-%d-%d", w, n))
		r.pace.wait(ctx)
		t0 := time.Now()
		o, err := r.create(ctx, req)
		r.record(reqCreate, time.Since(t0), err)
		if err != nil {
			continue
		}
		r.created.Add(1)
		if r.cfg.Workload != WorkloadLifecycle {
			continue
		}
		for _, s := range p.walk(&o) {
			if ctx.Err() != nil || (r.cfg.Orders == 0 && time.Now().After(deadline)) {
				break
			}
			r.pace.wait(ctx)
			t0 := time.Now()
			got, err := r.change(ctx, o.ID, s)
			r.record(s.kind, time.Since(t0), err)
			if err != nil {
				break
			}
			o = got
		}
	}
}

func (r *rawRun) record(kind string, d time.Duration, err error) {
	r.requests.Add(1)
	if err != nil {
		r.errors.Add(1)
		key := kind + ": " + err.Error()
		if len(key) > 120 {
			key = key[:120]
		}
		c, _ := r.errKinds.LoadOrStore(key, &atomic.Int64{})
		c.(*atomic.Int64).Add(1)
		return
	}
	r.tx.Add(d)
	r.perKind[kind].Add(d)
}

// create writes a new order as POST /api/v1/orders does: the order with its
// line items, the audit row of its creation and its order.created event
// (sequence 1), in one round trip between BEGIN and COMMIT.
func (r *rawRun) create(ctx context.Context, req order.CreateOrder) (order.Order, error) {
	o, err := order.NewOrder(req, uuid.NewV7, time.Now())
	if err != nil {
		return order.Order{}, err
	}
	payload, err := order.CreatedEvent(&o).Payload()
	if err != nil {
		return order.Order{}, err
	}
	eventID, err := uuid.NewV7()
	if err != nil {
		return order.Order{}, err
	}
	n := len(o.LineItems)
	ids := make([][16]byte, n)
	products, types, statuses := make([]string, n), make([]string, n), make([]string, n)
	quantities, prices := make([]int64, n), make([]int64, n)
	for i, li := range o.LineItems {
		ids[i], products[i], types[i], statuses[i] = li.ID, li.ProductID, string(li.ProductType), string(li.Status)
		quantities[i], prices[i] = li.Quantity, li.UnitPrice
	}
	b := &pgx.Batch{}
	b.Queue(rawInsertOrderSQL, [16]byte(o.ID), o.CustomerID, o.Currency, string(o.Status), o.TotalAmount, o.Version, o.CreatedAt, o.UpdatedAt, int64(1))
	b.Queue(rawInsertItemsSQL, [16]byte(o.ID), ids, products, types, quantities, prices, statuses)
	queueTransitions(b, []order.Transition{{OrderID: o.ID, To: order.StatusPending, Reason: ordersvc.ReasonCreated,
		Actor: rawActor, EventID: eventID, CreatedAt: o.CreatedAt}})
	b.Queue(rawInsertEventSQL, [16]byte(eventID), order.AggregateType, o.ID.String(), order.EventOrderCreated, string(payload), "{}", nil, int64(1))
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return order.Order{}, err
	}
	r.committed(o.ID, []uuid.UUID{eventID}, time.Now())
	return o, nil
}

// change makes step s on order id as the API's change routes do: lock the
// order and read its line items (one round trip), apply the request with
// the domain's state machines, then write the order (version checked), the
// moved line items, one audit row per change and the events (one round
// trip).
func (r *rawRun) change(ctx context.Context, id uuid.UUID, s step) (order.Order, error) {
	var (
		result order.Order
		events []uuid.UUID
	)
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		o, lastEvent, err := rawLock(ctx, tx, id)
		if err != nil {
			return err
		}
		now := time.Now()
		var changes []order.Change
		switch s.kind {
		case reqPay:
			changes, err = o.ConfirmPayment(order.ConfirmPayment{PaymentID: "pay-" + id.String()[:8], Amount: o.TotalAmount, Currency: o.Currency}, rawActor, now)
		case reqCancel:
			changes, err = o.Transition(s.to, "bench", rawActor, now)
		case reqTransition:
			changes, err = o.TransitionLineItem(s.item, s.to, "", rawActor, now)
		default:
			err = fmt.Errorf("bench: unknown step %s", s.kind)
		}
		if err != nil {
			return err
		}
		domain := order.Events(&o, changes)
		eventOf := make([]uuid.UUID, len(changes))
		b := &pgx.Batch{}
		b.Queue(rawUpdateOrderSQL, [16]byte(o.ID), string(o.Status), o.TotalAmount, o.Version, o.UpdatedAt, lastEvent+int64(len(domain)))
		var itemIDs [][16]byte
		var itemStatuses []string
		for _, c := range changes {
			if c.OrderLevel() {
				continue
			}
			if li := o.LineItem(c.LineItemID); li != nil && !slices.Contains(itemIDs, [16]byte(li.ID)) {
				itemIDs, itemStatuses = append(itemIDs, li.ID), append(itemStatuses, string(li.Status))
			}
		}
		if len(itemIDs) > 0 {
			b.Queue(rawUpdateItemsSQL, [16]byte(o.ID), itemIDs, itemStatuses)
		}
		type row struct {
			id      uuid.UUID
			typ     string
			payload string
		}
		rows := make([]row, len(domain))
		for i, e := range domain {
			eid, err := uuid.NewV7()
			if err != nil {
				return err
			}
			payload, err := e.Payload()
			if err != nil {
				return err
			}
			rows[i] = row{eid, e.Type, string(payload)}
			if e.Change >= 0 {
				eventOf[e.Change] = eid
			}
		}
		audit := make([]order.Transition, len(changes))
		for i, c := range changes {
			audit[i] = order.Transition{OrderID: c.OrderID, From: c.From, To: c.To, Reason: c.Reason, Actor: c.Actor,
				Automatic: c.Automatic, EventID: eventOf[i], CreatedAt: c.At}
			if !c.OrderLevel() {
				item := c.LineItemID
				audit[i].LineItemID = &item
			}
		}
		queueTransitions(b, audit)
		agg := o.ID.String()
		for i, e := range rows {
			b.Queue(rawInsertEventSQL, [16]byte(e.id), order.AggregateType, agg, e.typ, e.payload, "{}", nil, lastEvent+int64(i)+1)
		}
		br := tx.SendBatch(ctx, b)
		defer func() { _ = br.Close() }()
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("bench: order %s changed concurrently", id)
		}
		if len(itemIDs) > 0 {
			if tag, err = br.Exec(); err != nil {
				return err
			} else if tag.RowsAffected() != int64(len(itemIDs)) {
				return fmt.Errorf("bench: updated %d of %d line items of order %s", tag.RowsAffected(), len(itemIDs), id)
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		result, events = o, make([]uuid.UUID, len(rows))
		for i, e := range rows {
			events[i] = e.id
		}
		return nil
	})
	if err != nil {
		return order.Order{}, err
	}
	r.committed(id, events, time.Now())
	return result, nil
}

// rawLock locks the order and reads its line items in one round trip.
func rawLock(ctx context.Context, tx pgx.Tx, id uuid.UUID) (order.Order, int64, error) {
	b := &pgx.Batch{}
	b.Queue(rawLockOrderSQL, [16]byte(id))
	b.Queue(rawLoadItemsSQL, [16]byte(id))
	br := tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	var (
		o         order.Order
		lastEvent int64
	)
	if err := br.QueryRow().Scan((*[16]byte)(&o.ID), &o.CustomerID, &o.Currency, &o.Status, &o.TotalAmount, &o.Version,
		&o.CreatedAt, &o.UpdatedAt, &lastEvent); err != nil {
		return order.Order{}, 0, fmt.Errorf("bench: lock order %s: %w", id, err)
	}
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	rows, err := br.Query()
	if err != nil {
		return order.Order{}, 0, err
	}
	o.LineItems, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (order.LineItem, error) {
		var li order.LineItem
		err := row.Scan((*[16]byte)(&li.ID), &li.ProductID, &li.ProductType, &li.Quantity, &li.UnitPrice, &li.Status)
		return li, err
	})
	if err != nil {
		return order.Order{}, 0, err
	}
	return o, lastEvent, br.Close()
}

// queueTransitions queues the audit rows' INSERT, one statement for all.
func queueTransitions(b *pgx.Batch, ts []order.Transition) {
	n := len(ts)
	orders, events := make([][16]byte, n), make([][16]byte, n)
	items := make([]pgtype.UUID, n)
	from := make([]pgtype.Text, n)
	to, reasons, actors := make([]string, n), make([]string, n), make([]string, n)
	automatic := make([]bool, n)
	at := make([]time.Time, n)
	for i, tr := range ts {
		orders[i], events[i] = tr.OrderID, tr.EventID
		if tr.LineItemID != nil {
			items[i] = pgtype.UUID{Bytes: *tr.LineItemID, Valid: true}
		}
		from[i] = pgtype.Text{String: string(tr.From), Valid: tr.From != ""}
		to[i], reasons[i], actors[i] = string(tr.To), tr.Reason, tr.Actor
		automatic[i], at[i] = tr.Automatic, tr.CreatedAt
	}
	b.Queue(rawInsertTransitionsSQL, orders, items, from, to, reasons, actors, automatic, events, at)
}

// WriteSummary writes the rates and latencies.
func (r *APIBaselineResult) WriteSummary(w io.Writer) error {
	p := &errWriter{w: w}
	rate := "unpaced"
	if r.Rate > 0 {
		rate = fmt.Sprintf("paced at %.0f requests/s", r.Rate)
	}
	p.printf("herald bench --mode api-baseline: the API's statements in raw pgx transactions, %s, workload %s, %d clients, %s\n",
		r.Database, r.Workload, r.Concurrency, rate)
	p.printf("  load average %s at the start, %s at the end\n", r.Load, r.LoadAfter)
	p.printf("  %d orders, %d requests in %s (%.1f requests/s), %d errors; %d events written\n",
		r.Orders, r.Requests, r.Duration.Round(time.Millisecond), r.RequestsPerSec(), r.Errors, r.Events)
	if r.Relayed {
		v := r.Verify
		p.printf("  relayed to %s: %d received of %d expected, lost %d, reordered %d, duplicates %d, unexpected %d, unreadable %d\n",
			r.Broker, v.Received, v.Expected, v.Lost, v.Reordered, v.Duplicates, v.Unexpected, v.Invalid)
	} else {
		p.printf("  no relay: %d outbox rows at the end\n", r.OutboxRows)
	}
	for k, n := range r.ErrorKinds {
		p.printf("    %-60s %d\n", k, n)
	}
	if p.err != nil {
		return p.err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintf(tw, "  transaction latency\t%s\n", r.Tx)
	for _, k := range requestKinds {
		if s, ok := r.PerKind[k]; ok {
			_, _ = fmt.Fprintf(tw, "    %s\t%s\n", k, s)
		}
	}
	if r.Relayed {
		_, _ = fmt.Fprintf(tw, "  commit → consumer\t%s\n", r.E2E)
		_, _ = fmt.Fprintf(tw, "    first event of a transaction\t%s\n", r.E2EFirst)
		_, _ = fmt.Fprintf(tw, "    its later events\t%s\n", r.E2ELater)
	}
	return tw.Flush()
}

// JSON returns the result's line; its keys match the full mode's where they
// mean the same.
func (r *APIBaselineResult) JSON() any {
	c := r.PerKind[reqCreate]
	j := map[string]any{
		"mode": ModeAPIBaseline, "db": r.Database, "workload": r.Workload, "concurrency": r.Concurrency, "rate": r.Rate,
		"orders": r.Orders, "requests": r.Requests, "errors": r.Errors, "requests_per_sec": round2(r.RequestsPerSec()),
		"events": r.Events, "relay": r.Relayed,
		"api_p50_ms": ms(r.Tx.P50), "api_p99_ms": ms(r.Tx.P99), "create_p50_ms": ms(c.P50), "create_p99_ms": ms(c.P99),
		"seconds": round2(r.Duration.Seconds()), "load1": r.Load.One,
	}
	if r.Relayed {
		j["broker"], j["received"], j["lost"], j["reordered"], j["duplicates"] = r.Broker, r.Verify.Received, r.Verify.Lost, r.Verify.Reordered, r.Verify.Duplicates
		j["e2e_p50_ms"], j["e2e_p99_ms"] = ms(r.E2E.P50), ms(r.E2E.P99)
		j["e2e_first_p50_ms"], j["e2e_first_p99_ms"] = ms(r.E2EFirst.P50), ms(r.E2EFirst.P99)
		j["e2e_later_p50_ms"], j["e2e_later_p99_ms"] = ms(r.E2ELater.P50), ms(r.E2ELater.P99)
	} else {
		j["outbox_rows"] = r.OutboxRows
	}
	return j
}

// Failure reports failed transactions, and events lost, reordered or
// missing (without the relay: outbox rows that differ from the events
// written).
func (r *APIBaselineResult) Failure() error {
	var errs []error
	if r.Errors > 0 {
		errs = append(errs, fmt.Errorf("%d transactions failed", r.Errors))
	}
	switch {
	case r.Relayed && (!r.Verify.OK() || r.Verify.Received != r.Events):
		v := r.Verify
		errs = append(errs, fmt.Errorf("%d events written, %d received: %d lost, %d reordered, %d unexpected, %d unreadable (e.g. orders %v)",
			r.Events, v.Received, v.Lost, v.Reordered, v.Unexpected, v.Invalid, v.Examples))
	case !r.Relayed && r.OutboxRows != r.Events:
		errs = append(errs, fmt.Errorf("%d outbox rows for %d events written", r.OutboxRows, r.Events))
	}
	return errors.Join(errs...)
}
