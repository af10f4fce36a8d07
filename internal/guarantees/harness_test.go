package guarantees_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// waitLimit bounds every wait for an eventual condition. It is a safety net
// against hangs, not a speed assertion.
const waitLimit = 90 * time.Second

// txHandle is what a test does inside one database transaction.
type txHandle struct {
	exec    func(query string, args ...any) error
	enqueue func(events ...outbox.Event) error
}

// backend is one database with the outbox migrated, behind the same small
// surface for both drivers.
type backend struct {
	name string
	// url locates the database for another process (a child relay) or a
	// second driver instance.
	url string
	// concurrentWriters is false for SQLite: one write transaction at a time.
	concurrentWriters bool
	store             outbox.Store
	// openStore opens an independent driver on the same database, as
	// another relay process would.
	openStore func(t *testing.T) outbox.Store
	tx        func(ctx context.Context, fn func(h txHandle) error) error
	// rowsFor counts, in one snapshot, the outbox rows and open dead
	// letters holding event id.
	rowsFor func(ctx context.Context, id uuid.UUID) (inOutbox, inDLQ int, err error)
	// queryInt runs a query that returns one integer.
	queryInt func(ctx context.Context, query string) (int, error)
}

func (b *backend) enqueue(ctx context.Context, events ...outbox.Event) error {
	return b.tx(ctx, func(h txHandle) error { return h.enqueue(events...) })
}

// forEachBackend runs test as a parallel subtest on a fresh backend of
// each kind.
func forEachBackend(t *testing.T, test func(t *testing.T, b *backend)) {
	t.Helper()
	for name, newBackend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, newBackend(t))
		})
	}
}

func backends(t *testing.T) map[string]func(t *testing.T) *backend {
	t.Helper()
	return map[string]func(t *testing.T) *backend{
		"postgres": newPostgres,
		"sqlite":   newSQLite,
	}
}

func newPostgres(t *testing.T) *backend {
	t.Helper()
	url, _ := testdb.PostgresSchema(t)
	open := func(t *testing.T) *pgstore.Driver {
		pool, err := pgxpool.New(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		d, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := open(t)
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	client := outbox.NewClient[pgx.Tx](d)
	pool := d.Pool()
	_, err := pool.Exec(context.Background(), "CREATE TABLE widgets (id text PRIMARY KEY)")
	if err != nil {
		t.Fatal(err)
	}
	return &backend{
		name:              "postgres",
		url:               url,
		concurrentWriters: true,
		store:             d,
		openStore:         func(t *testing.T) outbox.Store { return open(t) },
		tx:                pgTx(pool, client),
		rowsFor: func(ctx context.Context, id uuid.UUID) (int, int, error) {
			var o, d int
			err := pool.QueryRow(ctx, `SELECT
				(SELECT count(*) FROM order_outbox WHERE id = $1),
				(SELECT count(*) FROM order_outbox_dlq WHERE event_id = $1 AND NOT reprocessed AND discarded_at IS NULL)`,
				id).Scan(&o, &d)
			return o, d, err
		},
		queryInt: func(ctx context.Context, q string) (n int, err error) {
			err = pool.QueryRow(ctx, q).Scan(&n)
			return n, err
		},
	}
}

// pgTx runs a test's transaction on pool, enqueueing through client.
func pgTx(pool *pgxpool.Pool, client *outbox.Client[pgx.Tx]) func(ctx context.Context, fn func(h txHandle) error) error {
	return func(ctx context.Context, fn func(h txHandle) error) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return fn(txHandle{
				exec: func(q string, args ...any) error { _, err := tx.Exec(ctx, q, args...); return err },
				enqueue: func(events ...outbox.Event) error {
					_, err := client.EnqueueTx(ctx, tx, events...)
					return err
				},
			})
		})
	}
}

func newSQLite(t *testing.T) *backend {
	t.Helper()
	path := testdb.SQLitePath(t)
	open := func(t *testing.T) *sqlitestore.Driver {
		d, err := sqlitestore.Open(path, sqlitestore.Config{Name: ordersvc.OutboxName})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	d := open(t)
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	client := outbox.NewClient[*sql.Tx](d)
	db := d.DB()
	if _, err := db.Exec("CREATE TABLE widgets (id TEXT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	return &backend{
		name:      "sqlite",
		url:       path,
		store:     d,
		openStore: func(t *testing.T) outbox.Store { return open(t) },
		tx: func(ctx context.Context, fn func(h txHandle) error) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			err = fn(txHandle{
				exec: func(q string, args ...any) error { _, err := tx.ExecContext(ctx, q, args...); return err },
				enqueue: func(events ...outbox.Event) error {
					_, err := client.EnqueueTx(ctx, tx, events...)
					return err
				},
			})
			if err != nil {
				return err
			}
			return tx.Commit()
		},
		rowsFor: func(ctx context.Context, id uuid.UUID) (int, int, error) {
			var o, d int
			err := db.QueryRowContext(ctx, `SELECT
				(SELECT count(*) FROM order_outbox WHERE id = ?1),
				(SELECT count(*) FROM order_outbox_dlq WHERE event_id = ?1 AND reprocessed = 0 AND discarded_at IS NULL)`,
				id.String()).Scan(&o, &d)
			return o, d, err
		},
		queryInt: func(ctx context.Context, q string) (n int, err error) {
			err = db.QueryRowContext(ctx, q).Scan(&n)
			return n, err
		},
	}
}

// broker is a private stream on the machine's NATS server.
type broker struct {
	url string
	cfg natsjs.Config
	nc  *nats.Conn
}

func machineNATSURL() string { return "nats://127.0.0.1:4222" }

func newBroker(t *testing.T, url string) *broker {
	t.Helper()
	name := randomName()
	cfg := natsjs.Config{Stream: "T_" + name, SubjectPrefix: "t" + name + "."}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", url, err)
	}
	t.Cleanup(func() {
		if js, err := jetstream.New(nc); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = js.DeleteStream(ctx, cfg.Stream)
			cancel()
		}
		nc.Close()
	})
	return &broker{url: url, cfg: cfg, nc: nc}
}

// publisher connects a new JetStream publisher to the broker's stream.
func (b *broker) publisher(t *testing.T) outbox.Publisher {
	t.Helper()
	p, err := natsjs.Connect(context.Background(), b.url, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// received reads everything the stream holds, in stream order.
func (b *broker) received(t *testing.T) []outbox.CloudEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, b.cfg.Stream)
	if err != nil {
		t.Fatalf("stream %s: %v", b.cfg.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := int(info.State.Msgs)
	var (
		mu  sync.Mutex
		got []outbox.CloudEvent
	)
	done := make(chan struct{})
	stop, err := natsjs.Subscribe(ctx, b.nc, b.cfg, natsjs.SubscribeOptions{}, func(d natsjs.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if d.Err != nil {
			t.Errorf("undecodable message at stream seq %d: %v", d.StreamSeq, d.Err)
		}
		if id := d.Header.Get("Nats-Msg-Id"); id != d.Event.ID {
			t.Errorf("Nats-Msg-Id %q differs from event id %q", id, d.Event.ID)
		}
		got = append(got, d.Event)
		if len(got) == want {
			close(done)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if want > 0 {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatalf("read %d of the stream's %d messages", len(got), want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}

// ledger remembers what a test enqueued, per aggregate in sequence order.
type ledger struct {
	mu  sync.Mutex
	ids map[string][]string // aggregate id → event ids by sequence
}

func newLedger() *ledger { return &ledger{ids: map[string][]string{}} }

func (l *ledger) add(events ...outbox.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range events {
		l.ids[e.AggregateID] = append(l.ids[e.AggregateID], e.ID.String())
	}
}

func (l *ledger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ids := range l.ids {
		n += len(ids)
	}
	return n
}

// verdict compares what the broker received with the ledger.
type verdict struct {
	lost, reordered, duplicates, unknown int
	problems                             []string
}

// check walks each aggregate's deliveries in stream order. Every enqueued
// event must arrive (G2), first arrivals must follow sequence order (G3),
// and a repeat may only be the event just delivered again, with the same id
// and sequence (G5: a duplicate comes only from a batch in flight at a crash).
func (l *ledger) check(received []outbox.CloudEvent) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	var v verdict
	next := map[string]int{}
	seqOf := map[string]int64{}
	for _, ce := range received {
		want, ok := l.ids[ce.Subject]
		if !ok {
			v.unknown++
			v.problems = append(v.problems, fmt.Sprintf("event %s of unknown aggregate %s", ce.ID, ce.Subject))
			continue
		}
		i := next[ce.Subject]
		switch {
		case i < len(want) && ce.ID == want[i]:
			next[ce.Subject] = i + 1
			seqOf[ce.ID] = ce.Sequence
			if ce.Sequence != int64(i+1) {
				v.problems = append(v.problems, fmt.Sprintf("aggregate %s: event %s has sequence %d, want %d", ce.Subject, ce.ID, ce.Sequence, i+1))
			}
		case i > 0 && ce.ID == want[i-1]:
			v.duplicates++
			if ce.Sequence != seqOf[ce.ID] {
				v.problems = append(v.problems, fmt.Sprintf("duplicate of %s carries sequence %d, first had %d", ce.ID, ce.Sequence, seqOf[ce.ID]))
			}
		default:
			v.reordered++
			v.problems = append(v.problems, fmt.Sprintf("aggregate %s: got %s (sequence %d) when expecting position %d", ce.Subject, ce.ID, ce.Sequence, i+1))
		}
	}
	for agg, ids := range l.ids {
		if n := next[agg]; n < len(ids) {
			v.lost += len(ids) - n
			v.problems = append(v.problems, fmt.Sprintf("aggregate %s: %d of %d events never arrived in order", agg, len(ids)-n, len(ids)))
		}
	}
	return v
}

func (v verdict) assertClean(t *testing.T) {
	t.Helper()
	for i, p := range v.problems {
		if i == 20 {
			t.Errorf("... and %d more problems", len(v.problems)-20)
			break
		}
		t.Error(p)
	}
	if v.lost+v.reordered+v.unknown > 0 {
		t.Fatalf("lost %d, reordered %d, unknown %d (duplicates %d)", v.lost, v.reordered, v.unknown, v.duplicates)
	}
}

// newEvent builds one event of aggregate agg.
func newEvent(t *testing.T, agg string, n int) outbox.Event {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"aggregate": agg, "n": n})
	return outbox.Event{ID: id, AggregateType: "widget", AggregateID: agg, Type: "widget.changed", Payload: payload}
}

// produce enqueues perAgg events for each of aggs aggregates in small
// transactions of one to three events, interleaving aggregates.
func produce(ctx context.Context, t *testing.T, b *backend, l *ledger, prefix string, aggs, perAgg int) {
	t.Helper()
	counts := make([]int, aggs)
	remaining := aggs * perAgg
	for i := 0; remaining > 0; i++ {
		a := i % aggs
		if counts[a] == perAgg {
			continue
		}
		agg := fmt.Sprintf("%s-%03d", prefix, a)
		batch := min(1+i%3, perAgg-counts[a])
		events := make([]outbox.Event, batch)
		for j := range events {
			events[j] = newEvent(t, agg, counts[a]+j)
		}
		if err := b.enqueue(ctx, events...); err != nil {
			t.Errorf("enqueue: %v", err)
			return
		}
		l.add(events...)
		counts[a] += batch
		remaining -= batch
	}
}

// waitUntil polls cond until it holds, failing the test after waitLimit.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectDelivered waits until the outbox is empty, then checks everything the
// broker received against the ledger and fails the test on any loss,
// reordering or unknown event. It returns the verdict and what arrived.
func expectDelivered(t *testing.T, s outbox.Store, br eventBroker, l *ledger) (verdict, []outbox.CloudEvent) {
	t.Helper()
	waitDrained(t, s)
	received := br.received(t)
	v := l.check(received)
	v.assertClean(t)
	return v, received
}

// waitDrained waits until the outbox is empty.
func waitDrained(t *testing.T, s outbox.Store) {
	t.Helper()
	waitUntil(t, "the outbox to drain", func() bool {
		st, err := s.Stats(context.Background())
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		return st.Pending == 0
	})
}

// runRelay runs a relay until the test ends.
func runRelay(t *testing.T, s outbox.Source, p outbox.Publisher, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	r := outbox.NewRelay(s, p, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r
}

func randomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
