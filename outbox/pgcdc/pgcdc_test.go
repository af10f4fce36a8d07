package pgcdc_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgcdc"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// The guarantees of the CDC relay (kills, outages, two relays, poison
// events) are tested in internal/guarantees/cdc_test.go; these are the
// source's set-up and operator functions.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newPool opens a pool on connURL, closed at cleanup.
func newPool(t *testing.T, connURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), connURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newDriver migrates an outbox in a fresh schema; the slot of the test is
// named after the schema and dropped at cleanup.
func newDriver(t *testing.T, connURL string) (*pgstore.Driver, string) {
	t.Helper()
	pool := newPool(t, connURL)
	d, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(connURL)
	if err != nil {
		t.Fatal(err)
	}
	return d, "herald_test_" + u.Query().Get("search_path")
}

// newSource sets up a source of d's outbox on a slot of its own, dropped
// at cleanup.
func newSource(t *testing.T, d *pgstore.Driver, connURL, slot string) *pgcdc.Source {
	t.Helper()
	src, err := pgcdc.New(d, connURL, pgcdc.Config{Slot: slot, Publication: slot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.DropSlot(context.Background()) })
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestSetupLagAndDropSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connURL, _ := testdb.PostgresSchema(t)
	d, slot := newDriver(t, connURL)
	src := newSource(t, d, connURL, slot)
	if err := src.Setup(ctx); err != nil { // again: nothing to create
		t.Fatalf("second Setup: %v", err)
	}
	l, err := src.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Exists || l.Active || l.Bytes < 0 {
		t.Fatalf("lag of a new slot nobody streams: %+v", l)
	}
	if err := src.DropSlot(ctx); err != nil {
		t.Fatal(err)
	}
	if l, err = src.Lag(ctx); err != nil || l.Exists {
		t.Fatalf("lag after DropSlot: %+v, %v", l, err)
	}
	var pubs int
	if err := d.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_publication WHERE pubname = $1", slot).Scan(&pubs); err != nil || pubs != 0 {
		t.Fatalf("publications left: %d, %v", pubs, err)
	}
}

// A role without the REPLICATION attribute is refused at start, with an
// error that says what to do.
func TestCheckRefusesARoleWithoutReplication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connURL, schema := testdb.PostgresSchema(t)
	d, slot := newDriver(t, connURL)
	role := "herald_test_norepl_" + strings.TrimPrefix(schema, "t_")
	if _, err := d.Pool().Exec(ctx, "CREATE ROLE "+role+" LOGIN NOSUPERUSER NOREPLICATION"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.Pool().Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, _ := url.Parse(connURL)
	u.User = url.User(role)
	pool := newPool(t, u.String())
	limited, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgcdc.New(limited, u.String(), pgcdc.Config{Slot: slot, Publication: slot})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Setup(ctx)
	if !errors.Is(err, pgcdc.ErrNoReplication) || !strings.Contains(err.Error(), "REPLICATION") {
		t.Fatalf("Setup as a role without REPLICATION: %v", err)
	}
}

func TestNewRefusesBadNames(t *testing.T) {
	t.Parallel()
	connURL, _ := testdb.PostgresSchema(t)
	d, _ := newDriver(t, connURL)
	for _, cfg := range []pgcdc.Config{{Slot: "Bad-Slot"}, {Slot: "1slot"}, {Publication: "x y"}, {Slot: strings.Repeat("s", 64)}} {
		if _, err := pgcdc.New(d, connURL, cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	src, err := pgcdc.New(d, connURL, pgcdc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Slot() != "herald_order_outbox" || src.Publication() != "herald_order_outbox" {
		t.Fatalf("default names %s, %s", src.Slot(), src.Publication())
	}
}

// Setup refuses an outbox whose tables do not exist, saying to migrate.
func TestSetupNeedsTheTables(t *testing.T) {
	t.Parallel()
	connURL, _ := testdb.PostgresSchema(t)
	pool := newPool(t, connURL)
	d, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgcdc.New(d, connURL, pgcdc.Config{Slot: "herald_test_unused", Publication: "herald_test_unused"})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Setup(context.Background()); err == nil || !strings.Contains(err.Error(), "migrate") {
		t.Fatalf("Setup without tables: %v", err)
	}
	var n int
	_ = pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'herald_test_unused'").Scan(&n)
	if n != 0 {
		t.Fatal("Setup created a slot for an outbox without tables")
	}
}

// recorder is a publisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	seen []outbox.Record
}

func (r *recorder) Publish(_ context.Context, msgs []outbox.Message) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.seen = append(r.seen, m.Record)
	}
	return make([]error, len(msgs))
}

func (r *recorder) Close() error { return nil }

func (r *recorder) records() []outbox.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// Events written as logical decoding messages (pgstore.Config.WALMessages)
// reach the relay whole: numbered by the outbox's counter or by the
// caller, with headers, an idempotency key, a null payload; beside events
// written as rows; and the messages of another outbox of the same name in
// another schema of the database are not read.
func TestMessagesCarryTheEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connURL, _ := testdb.PostgresSchema(t)
	d, slot := newDriver(t, connURL)
	src := newSource(t, d, connURL, slot)
	msgs, err := pgstore.New(d.Pool(), pgstore.Config{Name: "order_outbox", WALMessages: true})
	if err != nil {
		t.Fatal(err)
	}
	otherURL, _ := testdb.PostgresSchema(t)
	other, _ := newDriver(t, otherURL)
	otherMsgs, err := pgstore.New(other.Pool(), pgstore.Config{Name: "order_outbox", WALMessages: true})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now().Add(-time.Second) // the server's clock is this machine's
	event := func(agg string, seq int64, payload string) outbox.Event {
		return outbox.Event{ID: uuid.Must(uuid.NewV7()), AggregateType: "order", AggregateID: agg,
			Type: "order.created", Payload: json.RawMessage(payload), Sequence: seq}
	}
	counted := event("o-1", 0, `{"total": 12, "note": "crème <b>brûlée</b>"}`)
	counted.Headers = map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	counted.IdempotencyKey = "key-1"
	counted2 := event("o-1", 0, `null`)
	numbered := event("o-2", 7, `[1, 2, 3]`)
	row := event("o-3", 0, `{"as": "a row"}`)
	written := []outbox.Event{counted, counted2, numbered, row}
	for _, w := range []struct {
		d      *pgstore.Driver
		events []outbox.Event
	}{
		{msgs, []outbox.Event{counted, counted2}},
		{otherMsgs, []outbox.Event{event("o-1", 0, `{"other": true}`)}},
		{msgs, []outbox.Event{numbered}},
		{d, []outbox.Event{row}},
	} {
		if _, err := outbox.NewClient[pgx.Tx](w.d).Enqueue(ctx, w.events...); err != nil {
			t.Fatal(err)
		}
	}

	rec := &recorder{}
	relay := outbox.NewRelay(src, rec, outbox.RelayConfig{BatchSize: 10})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for len(rec.records()) < len(written) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for an event that should not come
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.records()
	if len(got) != len(written) {
		t.Fatalf("published %d events, want %d: %+v", len(got), len(written), got)
	}
	byID := make(map[uuid.UUID]outbox.Record)
	position := make(map[uuid.UUID]int)
	for i, r := range got {
		byID[r.ID], position[r.ID] = r, i
	}
	if position[counted.ID] > position[counted2.ID] {
		t.Errorf("o-1's events published out of order: %+v", got)
	}
	wantSeq := map[uuid.UUID]int64{counted.ID: 1, counted2.ID: 2, numbered.ID: 7, row.ID: 1}
	for _, w := range written {
		r, ok := byID[w.ID]
		if !ok {
			t.Fatalf("event %s (%s) not published", w.ID, w.Payload)
		}
		var a, b any
		if err := json.Unmarshal(r.Payload, &a); err != nil {
			t.Fatalf("payload %q: %v", r.Payload, err)
		}
		_ = json.Unmarshal(w.Payload, &b)
		if r.AggregateType != w.AggregateType || r.AggregateID != w.AggregateID || r.Type != w.Type ||
			!reflect.DeepEqual(a, b) || !maps.Equal(r.Headers, w.Headers) || r.IdempotencyKey != w.IdempotencyKey ||
			r.Sequence != wantSeq[w.ID] || r.CreatedAt.Before(start) || r.CreatedAt.After(time.Now()) {
			t.Errorf("published %+v\nwritten %+v (sequence %d)", r, w, wantSeq[w.ID])
		}
	}
	var rows int
	if err := d.Pool().QueryRow(ctx, "SELECT count(*) FROM order_outbox").Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d rows left in the outbox table (%v): messages write none, a kept row is deleted", rows, err)
	}
}

// Writing messages to an outbox whose table does not exist fails, rather
// than emitting messages no relay would ever match.
func TestMessagesNeedTheOutbox(t *testing.T) {
	t.Parallel()
	connURL, _ := testdb.PostgresSchema(t)
	pool := newPool(t, connURL)
	d, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox", WALMessages: true})
	if err != nil {
		t.Fatal(err)
	}
	e := outbox.Event{AggregateType: "order", AggregateID: "o-1", Type: "order.created", Payload: json.RawMessage(`{}`), Sequence: 1}
	if _, err := outbox.NewClient[pgx.Tx](d).Enqueue(context.Background(), e); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("a message for an outbox that does not exist: %v, want an error saying so", err)
	}
	if _, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox", WALMessages: true, DeleteInTx: true}); err == nil {
		t.Fatal("New accepted both DeleteInTx and WALMessages")
	}
}
