package guarantees_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgcdc"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// The guarantees of the change-data-capture relay (package pgcdc), tested
// as the polling relay's are: a child relay killed mid-stream, the broker
// going away, the database ending the replication connection, two relays
// started at once on one slot, and a poison event.

// cdcSlotPrefix starts the name of every slot these tests create, followed
// by the test's schema, so that a slot left behind by a crashed run is
// recognised (and dropped by dropStaleCDCSlots) once its schema is gone.
const cdcSlotPrefix = "herald_test_"

// cdcWrites is how a CDC backend's writers write their events.
type cdcWrites int

const (
	keepRows    cdcWrites = iota // rows kept for the relay to delete
	deleteRows                   // rows deleted in their transaction (pgstore.Config.DeleteInTx)
	walMessages                  // no rows, logical decoding messages (pgstore.Config.WALMessages)
)

func (w cdcWrites) String() string {
	return [...]string{"kept rows", "rows deleted in their transaction", "messages"}[w]
}

// cdcBackend is a PostgreSQL backend whose writers write in the given way,
// with a slot and a publication of its own, dropped when the test ends.
func cdcBackend(t *testing.T, writes cdcWrites) (b *backend, slot string) {
	t.Helper()
	dropStaleCDCSlots(t)
	b = newPostgres(t)
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	slot = cdcSlotPrefix + u.Query().Get("search_path")
	t.Cleanup(func() { testdb.DropSlot(t, slot) })
	if writes != keepRows {
		pool, err := pgxpool.New(context.Background(), b.url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		d, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName,
			DeleteInTx: writes == deleteRows, WALMessages: writes == walMessages})
		if err != nil {
			t.Fatal(err)
		}
		b.tx = pgTx(pool, outbox.NewClient[pgx.Tx](d))
	}
	return b, slot
}

// newCDCSource opens a CDC source on b's database with its own pool;
// appName names its connections, for pg_terminate_backend.
func newCDCSource(t *testing.T, b *backend, slot, appName string, cfg pgcdc.Config) *pgcdc.Source {
	t.Helper()
	conn := b.url
	if appName != "" {
		conn += "&application_name=" + url.QueryEscape(appName)
	}
	pool, err := pgxpool.New(context.Background(), conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	d, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Slot, cfg.Publication = slot, slot
	if os.Getenv("HERALD_TEST_CDC_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 50 * time.Millisecond
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 50 * time.Millisecond
	}
	src, err := pgcdc.New(d, conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return src
}

var dropStaleOnce sync.Once

// dropStaleCDCSlots drops the inactive test slots (and publications) whose
// schema no longer exists: left by a test run that crashed before its
// cleanup. A slot left behind would keep write-ahead log forever.
func dropStaleCDCSlots(t *testing.T) {
	dropStaleOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testdb.PostgresURL())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(ctx) }()
		rows, _ := conn.Query(ctx, `SELECT slot_name FROM pg_replication_slots
			WHERE slot_name LIKE 'herald\_test\_%' AND NOT active
			  AND NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = substr(slot_name, length('herald_test_') + 1))`)
		stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stale {
			_, _ = conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s)
			_, _ = conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{s}.Sanitize())
			t.Logf("dropped the stale test slot %s", s)
		}
	})
}

// waitReceived waits until the broker holds every event of the ledger
// (the outbox table stays empty when writers delete their rows, so it
// cannot tell), then checks order and loss.
func waitReceived(t *testing.T, br eventBroker, l *ledger) (verdict, []outbox.CloudEvent) {
	t.Helper()
	want := l.total()
	var received []outbox.CloudEvent
	waitUntil(t, "every event on the broker", func() bool {
		received = br.received(t)
		seen := make(map[string]bool, len(received))
		for _, ce := range received {
			seen[ce.ID] = true
		}
		return len(seen) >= want
	})
	v := l.check(received)
	v.assertClean(t)
	return v, received
}

// G2 for CDC: a child CDC relay killed with SIGKILL mid-stream, again and
// again while writers write events that only the log holds (rows deleted
// in their transactions, or messages), loses nothing; the next relay
// starts from the slot's confirmed position.
func TestCDCNoLossWhenRelayIsKilled(t *testing.T) {
	t.Parallel()
	forEachLogOnlyWrite(t, cdcNoLossWhenRelayIsKilled)
}

// forEachLogOnlyWrite runs test, in parallel, for each way of writing
// events that leaves them in the log only: rows deleted in their
// transaction, and logical decoding messages.
func forEachLogOnlyWrite(t *testing.T, test func(*testing.T, cdcWrites)) {
	for _, w := range []cdcWrites{deleteRows, walMessages} {
		t.Run(w.String(), func(t *testing.T) {
			t.Parallel()
			test(t, w)
		})
	}
}

func cdcNoLossWhenRelayIsKilled(t *testing.T, writes cdcWrites) {
	b, slot := cdcBackend(t, writes)
	newCDCSource(t, b, slot, "", pgcdc.Config{}) // creates the slot before anything is written
	br := newBroker(t, machineNATSURL())
	l := newLedger()
	env := []string{childDriver + "=postgres-cdc", childSlot + "=" + slot, childDelay + "=20ms"}

	produced := make(chan struct{})
	go func() {
		defer close(produced)
		produce(context.Background(), t, b, l, "k", 40, 40)
	}()
	for i := 0; i < 8 || i < 50 && len(br.received(t)) == 0; i++ {
		child := startChild(t, b, br, env...)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if err := child.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = child.Wait()
	}
	if len(br.received(t)) == 0 {
		t.Fatal("no child relay published anything before it was killed; the test proved nothing")
	}
	<-produced
	child := startChild(t, b, br, env...)
	v, received := waitReceived(t, br, l)
	_ = child.Process.Kill()
	_ = child.Wait()
	t.Logf("%d events, %d received, %d duplicates", l.total(), len(received), v.duplicates)
}

// G2 for CDC: the database ending the relay's connections (the walsender's
// included) again and again loses nothing.
func TestCDCNoLossAcrossConnectionTermination(t *testing.T) {
	t.Parallel()
	b, slot := cdcBackend(t, deleteRows)
	app := "cdc_" + randomName()
	src := newCDCSource(t, b, slot, app, pgcdc.Config{})
	br := newBroker(t, machineNATSURL())
	// A slow publisher keeps a backlog read but not yet published, which a
	// slot confirmed too early would lose.
	pub := slowPublisher{Publisher: br.publisher(t), delay: 20 * time.Millisecond}
	r := runRelay(t, src, pub, outbox.RelayConfig{BatchSize: 20, Retry: outbox.RetryPolicy{Base: 10 * time.Millisecond}})

	l := newLedger()
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		produce(context.Background(), t, b, l, "r", 30, 30)
	}()
	var killed, walsenders int64
	for range 10 {
		waitUntil(t, "the relay to stream", src.Streaming)
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
		var n, w int64
		err := b.store.(*pgstore.Driver).Pool().QueryRow(context.Background(),
			`SELECT count(pg_terminate_backend(pid)), count(*) FILTER (WHERE backend_type = 'walsender')
			FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n, &w)
		if err != nil {
			t.Fatal(err)
		}
		killed, walsenders = killed+n, walsenders+w
	}
	<-produced
	v, _ := waitReceived(t, br, l)
	if walsenders == 0 {
		t.Fatal("no walsender was ever terminated; the test proved nothing")
	}
	t.Logf("terminated %d connections (%d walsenders); %d published, %d duplicates", killed, walsenders, r.Counters().Published, v.duplicates)
}

// G2 for CDC: a broker outage loses nothing and charges no attempt.
func TestCDCNoLossAcrossBrokerOutage(t *testing.T) {
	t.Parallel()
	b, slot := cdcBackend(t, deleteRows)
	src := newCDCSource(t, b, slot, "", pgcdc.Config{})
	br := newNATSServer(t)
	noLossAcrossOutageOf(t, b, br, src, func(l *ledger) { waitReceived(t, br, l) })
}

// Two CDC relays started at once on one slot: one streams, the other
// waits; when the first stops, the second takes over. Nothing is lost or
// reordered, and without a crash nothing is published twice.
func TestCDCTwoRelaysOneSlot(t *testing.T) {
	t.Parallel()
	b, slot := cdcBackend(t, keepRows) // the table must drain too
	br := newBroker(t, machineNATSURL())
	pub := br.publisher(t)
	srcs := []*pgcdc.Source{
		newCDCSource(t, b, slot, "", pgcdc.Config{}),
		newCDCSource(t, b, slot, "", pgcdc.Config{}),
	}
	var (
		cancels []context.CancelFunc
		dones   []chan error
	)
	for _, src := range srcs {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		r := outbox.NewRelay(src, pub, outbox.RelayConfig{BatchSize: 25, Workers: 1, PollInterval: 50 * time.Millisecond})
		go func() { done <- r.Run(ctx) }()
		cancels, dones = append(cancels, cancel), append(dones, done)
	}
	stop := func(i int) {
		if cancels[i] != nil {
			cancels[i]()
			if err := <-dones[i]; err != nil {
				t.Errorf("relay %d: %v", i, err)
			}
			cancels[i] = nil
		}
	}
	t.Cleanup(func() { stop(0); stop(1) })

	l := newLedger()
	produce(context.Background(), t, b, l, "a", 30, 20)
	waitUntil(t, "one relay to stream", func() bool { return srcs[0].Streaming() || srcs[1].Streaming() })
	first := 0
	if srcs[1].Streaming() {
		first = 1
	}
	waitDrained(t, b.store)
	if srcs[1-first].Streaming() {
		t.Fatal("both relays stream one slot")
	}
	stop(first)
	produce(context.Background(), t, b, l, "b", 30, 20)
	waitUntil(t, "the second relay to take the slot over", srcs[1-first].Streaming)
	waitDrained(t, b.store)
	v, _ := waitReceived(t, br, l)
	if v.duplicates != 0 {
		t.Fatalf("%d duplicates after a graceful hand-over", v.duplicates)
	}
}

// slowPublisher pauses before each publish.
type slowPublisher struct {
	outbox.Publisher
	delay time.Duration
}

func (p slowPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	time.Sleep(p.delay)
	return p.Publisher.Publish(ctx, msgs)
}

// poisonPublisher fails every event of one aggregate while poisoned.
type poisonPublisher struct {
	outbox.Publisher
	mu       sync.Mutex
	poisoned string
}

func (p *poisonPublisher) set(agg string) { p.mu.Lock(); p.poisoned = agg; p.mu.Unlock() }

func (p *poisonPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	bad := p.poisoned
	p.mu.Unlock()
	errs := make([]error, len(msgs))
	var good []outbox.Message
	var idx []int
	for i, m := range msgs {
		if m.AggregateID == bad {
			errs[i] = outbox.Permanent(errors.New("poison"))
			continue
		}
		good, idx = append(good, m), append(idx, i)
	}
	if len(good) > 0 {
		for j, err := range p.Publisher.Publish(ctx, good) {
			errs[idx[j]] = err
		}
	}
	return errs
}

// G6/G7 for CDC: a poison event is dead-lettered; its aggregate's later
// events are parked in the outbox table (the polling relay's rules see them
// as parked) while other aggregates flow; a replay publishes the dead
// letter and then the parked events, in order, ahead of newer ones. Events
// written as messages have no row until they are parked.
func TestCDCPoisonIsParkedAndReplayedInOrder(t *testing.T) {
	t.Parallel()
	forEachLogOnlyWrite(t, cdcPoisonIsParkedAndReplayedInOrder)
}

func cdcPoisonIsParkedAndReplayedInOrder(t *testing.T, writes cdcWrites) {
	b, slot := cdcBackend(t, writes)
	src := newCDCSource(t, b, slot, "", pgcdc.Config{})
	br := newBroker(t, machineNATSURL())
	pub := &poisonPublisher{Publisher: br.publisher(t)}
	pub.set("p-000")
	r := runRelay(t, src, pub, outbox.RelayConfig{BatchSize: 10, Retry: outbox.RetryPolicy{Base: time.Millisecond, MaxAttempts: 2}})
	ctx := context.Background()
	l := newLedger()
	produce(ctx, t, b, l, "p", 3, 5) // p-000 is poisoned
	waitUntil(t, "the poison event to be dead-lettered and the rest parked", func() bool {
		st, err := b.store.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.DeadLetters == 1 && st.Parked == 4
	})
	waitUntil(t, "the other aggregates to flow", func() bool { return r.Counters().Published >= 10 })
	// More events of the parked aggregate join the parked ones.
	more := []outbox.Event{newEvent(t, "p-000", 5), newEvent(t, "p-000", 6)}
	if err := b.enqueue(ctx, more...); err != nil {
		t.Fatal(err)
	}
	l.add(more...)
	waitUntil(t, "the new events to be parked", func() bool {
		st, err := b.store.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Parked == 6
	})
	pub.set("")
	if n, err := b.store.ReplayDeadLetters(ctx, outbox.DeadLetterFilter{}); err != nil || n != 1 {
		t.Fatalf("replay: %d, %v", n, err)
	}
	last := []outbox.Event{newEvent(t, "p-000", 7)}
	if err := b.enqueue(ctx, last...); err != nil {
		t.Fatal(err)
	}
	l.add(last...)
	waitDrained(t, b.store)
	waitReceived(t, br, l)
}

// With rows kept by the writers, the CDC relay deletes each row once its
// event is acknowledged: the table drains, and a polling relay started
// afterwards finds nothing to publish again.
func TestCDCKeptRowsAreDeleted(t *testing.T) {
	t.Parallel()
	b, slot := cdcBackend(t, keepRows)
	// Rows written before the slot exists are read from the table.
	l := newLedger()
	produce(context.Background(), t, b, l, "pre", 5, 4)
	src := newCDCSource(t, b, slot, "", pgcdc.Config{})
	br := newBroker(t, machineNATSURL())
	runRelay(t, src, br.publisher(t), outbox.RelayConfig{BatchSize: 20})
	produce(context.Background(), t, b, l, "kept", 20, 10)
	v, _ := expectDelivered(t, b.store, br, l)
	waitReceived(t, br, l)
	if v.duplicates != 0 {
		t.Fatalf("%d duplicates", v.duplicates)
	}
	if !strings.HasPrefix(src.Slot(), cdcSlotPrefix) {
		t.Fatalf("slot %s", src.Slot())
	}
}
