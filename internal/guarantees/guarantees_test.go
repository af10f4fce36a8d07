package guarantees_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// G1: an order change and its events commit together or not at all.
func TestG1AtomicWrite(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		br := newBroker(t, machineNATSURL())
		runRelay(t, b.store, br.publisher(t), outbox.RelayConfig{})

		// The business write fails after the event was enqueued: both roll back.
		doomed := newEvent(t, "w-doomed", 0)
		if err := b.tx(ctx, func(h txHandle) error { return h.exec("INSERT INTO widgets VALUES ('dup')") }); err != nil {
			t.Fatal(err)
		}
		err := b.tx(ctx, func(h txHandle) error {
			if err := h.enqueue(doomed); err != nil {
				return err
			}
			return h.exec("INSERT INTO widgets VALUES ('dup')") // primary key violation
		})
		if err == nil {
			t.Fatal("transaction with a failing business write committed")
		}
		// The business write succeeds, then enqueueing fails: both roll back.
		bad := newEvent(t, "w-bad", 0)
		bad.Payload = []byte("{not json")
		err = b.tx(ctx, func(h txHandle) error {
			if err := h.exec("INSERT INTO widgets VALUES ('w-bad')"); err != nil {
				return err
			}
			return h.enqueue(bad)
		})
		if !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Fatalf("enqueue of invalid payload: %v, want ErrInvalidEvent", err)
		}
		// Both succeed: both commit.
		l := newLedger()
		good := newEvent(t, "w-good", 0)
		err = b.tx(ctx, func(h txHandle) error {
			if err := h.exec("INSERT INTO widgets VALUES ('w-good')"); err != nil {
				return err
			}
			return h.enqueue(good)
		})
		if err != nil {
			t.Fatal(err)
		}
		l.add(good)

		for _, id := range []uuid.UUID{doomed.ID, bad.ID} {
			in, dlq, err := b.rowsFor(ctx, id)
			if err != nil || in+dlq != 0 {
				t.Fatalf("rolled-back event %s: %d outbox rows, %d dead letters, err %v", id, in, dlq, err)
			}
		}
		widgets, err := b.queryInt(ctx, "SELECT count(*) FROM widgets")
		if err != nil {
			t.Fatal(err)
		}
		if widgets != 2 { // 'dup' and 'w-good'
			t.Fatalf("widgets = %d, want 2: a rolled-back business write survived", widgets)
		}
		waitDrained(t, b.store)
		waitUntil(t, "the committed event on the broker", func() bool { return len(br.received(t)) == 1 })
		v := l.check(br.received(t))
		v.assertClean(t)
	})
}

// G2: a relay killed with SIGKILL at random moments, while producers keep
// writing, loses nothing; G3 and G5 are checked on the same run.
func TestG2NoLossWhenRelayIsKilled(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b *backend) {
		br := newBroker(t, machineNATSURL())
		l := newLedger()
		ctx := context.Background()

		produced := make(chan struct{})
		go func() {
			defer close(produced)
			produce(ctx, t, b, l, "k", 40, 40)
		}()
		// Eight kills at least, more until one child got to publish (a
		// slow machine may need them).
		for i := 0; i < 8 || i < 50 && len(br.received(t)) == 0; i++ {
			child := startChild(t, b, br)
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
			if err := child.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = child.Wait()
		}
		if n := len(br.received(t)); n == 0 {
			t.Fatal("no child relay published anything before it was killed; the test proved nothing")
		}
		<-produced
		child := startChild(t, b, br)
		waitDrained(t, b.store)
		_ = child.Process.Kill()
		_ = child.Wait()

		received := br.received(t)
		v := l.check(received)
		v.assertClean(t)
		t.Logf("%d events, %d received, %d duplicates", l.total(), len(received), v.duplicates)
	})
}

// G2: the database dropping every relay connection again and again (what a
// restart looks like from the relay) loses nothing.
func TestG2NoLossAcrossDatabaseRestart(t *testing.T) {
	t.Parallel()
	b := newPostgres(t)
	br := newBroker(t, machineNATSURL())
	app := "relay_" + randomName()
	pool, err := pgxpool.New(context.Background(), b.url+"&application_name="+url.QueryEscape(app))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, store, br.publisher(t), outbox.RelayConfig{BatchSize: 20, Retry: outbox.RetryPolicy{Base: 10 * time.Millisecond}})

	l := newLedger()
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		produce(context.Background(), t, b, l, "r", 30, 30)
	}()
	var killed int64
	for range 10 {
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
		var n int64
		err := b.store.(*pgstore.Driver).Pool().QueryRow(context.Background(),
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		killed += n
	}
	<-produced
	v, _ := expectDelivered(t, b.store, br, l)
	if killed == 0 {
		t.Fatal("no relay connection was ever terminated; the test proved nothing")
	}
	t.Logf("terminated %d relay connections; %d duplicates", killed, v.duplicates)
}

// G2: the broker going away and coming back loses nothing, on each broker
// that can be stopped and restarted (see outageKinds).
func TestG2NoLossAcrossBrokerOutage(t *testing.T) {
	t.Parallel()
	for _, k := range outageKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, b *backend) { noLossAcrossOutage(t, b, k.open(t)) })
		})
	}
}

func noLossAcrossOutage(t *testing.T, b *backend, br outageBroker) {
	noLossAcrossOutageOf(t, b, br, b.store, func(*ledger) { waitDrained(t, b.store) })
}

// noLossAcrossOutageOf runs the outage test with a relay on src; drained
// waits until every event of the ledger is out.
func noLossAcrossOutageOf(t *testing.T, b *backend, br outageBroker, src outbox.Source, drained func(l *ledger)) {
	r := runRelay(t, src, br.publisher(t), outbox.RelayConfig{
		BatchSize: 20, PublishTimeout: time.Second, Retry: outbox.RetryPolicy{Base: 10 * time.Millisecond, Cap: 200 * time.Millisecond, MaxAttempts: 1000},
	})
	l := newLedger()
	ctx := context.Background()
	produce(ctx, t, b, l, "before", 10, 10)
	waitUntil(t, "events before the outage on the broker", func() bool { return r.Counters().Published > 0 })
	br.down(t)
	// Written while the broker is down: the relay must keep them.
	produce(ctx, t, b, l, "during", 10, 10)
	// The relay takes the outage for one: it gives its batches back
	// without charging their events an attempt.
	waitUntil(t, "the relay to meet the outage", func() bool { return r.Counters().Outages > 0 })
	time.Sleep(300 * time.Millisecond)
	br.up(t)
	produce(ctx, t, b, l, "after", 10, 10)
	drained(l)
	st, err := b.store.Stats(context.Background())
	if err != nil || st.DeadLetters != 0 {
		t.Fatalf("dead letters after the outage: %d (err %v)", st.DeadLetters, err)
	}
	received := br.received(t)
	if !br.dropsDuplicates() {
		received, _ = dedupe(t, received)
	}
	v := l.check(received)
	v.assertClean(t)
}

// G3: several relays racing on one database keep each aggregate's order,
// on every broker.
func TestG3OrderWithRacingRelays(t *testing.T) {
	t.Parallel()
	for _, k := range brokerKinds {
		for name, newBackend := range backends(t) {
			for _, relays := range []int{2, 4} {
				t.Run(fmt.Sprintf("%s/%s/%d_relays", k.name, name, relays), func(t *testing.T) {
					t.Parallel()
					b := newBackend(t)
					br := k.open(t)
					guard := newOrderGuard(t, br.publisher(t))
					l := newLedger()
					produce(context.Background(), t, b, l, "g", 50, 30)
					for range relays {
						runRelay(t, guard.store(b.openStore(t)), guard, outbox.RelayConfig{BatchSize: 25, Workers: 2})
					}
					v, _ := expectDelivered(t, b.store, br, l)
					if v.duplicates != 0 {
						t.Fatalf("%d duplicates without any crash", v.duplicates)
					}
				})
			}
		}
	}
}

// G4: an event whose transaction commits after later-numbered ones is
// still published. Only databases with concurrent writers can commit out
// of order.
func TestG4LateCommitIsPublished(t *testing.T) {
	t.Parallel()
	b := newPostgres(t)
	br := newBroker(t, machineNATSURL())
	runRelay(t, b.store, br.publisher(t), outbox.RelayConfig{})
	ctx := context.Background()
	l := newLedger()

	late := newEvent(t, "late", 0)
	enqueued, commit := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- b.tx(ctx, func(h txHandle) error {
			if err := h.enqueue(late); err != nil {
				return err
			}
			close(enqueued)
			<-commit
			return nil
		})
	}()
	<-enqueued
	// Events written after the held one, with later ids and positions,
	// commit and are published first.
	produce(ctx, t, b, l, "early", 5, 3)
	waitUntil(t, "the early events on the broker", func() bool { return len(br.received(t)) == l.total() })
	close(commit)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	l.add(late)
	expectDelivered(t, b.store, br, l)
}

// G5: an event published again (acks lost before the relay could record
// them) carries the same id, so JetStream drops the repeat, and a consumer
// of the brokers that keep it (RabbitMQ, Redis) drops it by its id.
func TestG5DuplicatesCarryTheSameID(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *backend, br eventBroker) {
		pub := &ackThenFail{Publisher: br.publisher(t), times: 2}
		l := newLedger()
		produce(context.Background(), t, b, l, "d", 10, 3)
		r := runRelay(t, b.store, pub, outbox.RelayConfig{Retry: outbox.RetryPolicy{Base: time.Millisecond, Cap: 5 * time.Millisecond}})
		waitDrained(t, b.store)
		// Every message of the batch failing alike is an outage: the batch
		// is given back and published again, uncharged.
		if c := r.Counters(); c.Retried == 0 && c.Outages == 0 {
			t.Fatal("no batch was published twice; the test proved nothing")
		}
		received := br.received(t)
		if !br.dropsDuplicates() {
			// The broker keeps the repeats: each must be the same event,
			// with the same id, and dropping them by id leaves every event
			// once, in order.
			var repeats int
			received, repeats = dedupe(t, received)
			if repeats == 0 {
				t.Fatal("the broker holds no repeat: the test proved nothing")
			}
		}
		v := l.check(received)
		v.assertClean(t)
		if len(received) != l.total() || v.duplicates != 0 {
			t.Fatalf("broker holds %d messages (%d duplicates) for %d events: republished events did not carry their ids",
				len(received), v.duplicates, l.total())
		}
	})
}

// G6: after the configured attempts an event moves to the dead-letter
// queue in one transaction: at every instant it is in exactly one table.
func TestG6DeadLetteringIsAtomic(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		br := newBroker(t, machineNATSURL())
		pub := newFaulty(br.publisher(t))
		pub.poison("p", errBroker)
		poison := newEvent(t, "p", 0)
		if err := b.enqueue(ctx, poison); err != nil {
			t.Fatal(err)
		}

		var samples, bad atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				in, dlq, err := b.rowsFor(ctx, poison.ID)
				if err != nil {
					t.Errorf("sample: %v", err)
					return
				}
				samples.Add(1)
				if in+dlq != 1 {
					bad.Add(1)
					t.Errorf("event in %d outbox rows and %d open dead letters", in, dlq)
				}
			}
		})
		r := runRelay(t, b.store, pub, outbox.RelayConfig{
			PollInterval: 5 * time.Millisecond,
			Retry:        outbox.RetryPolicy{Base: time.Millisecond, Cap: 2 * time.Millisecond, MaxAttempts: 3},
		})
		waitUntil(t, "the event to be dead-lettered", func() bool { return r.Counters().DeadLettered == 1 })
		close(stop)
		wg.Wait()
		if bad.Load() > 0 || samples.Load() == 0 {
			t.Fatalf("%d of %d samples saw the event in neither or both tables", bad.Load(), samples.Load())
		}
		dls, err := b.store.ListDeadLetters(ctx, outbox.DeadLetterFilter{AggregateID: "p"})
		if err != nil || len(dls) != 1 {
			t.Fatalf("dead letters: %v, %v", dls, err)
		}
		dl := dls[0]
		if dl.EventID != poison.ID || dl.Attempts != 3 || dl.Error == "" || dl.FirstFailedAt.IsZero() || dl.MovedAt.Before(dl.FirstFailedAt) {
			t.Fatalf("dead letter lost its failure details: %+v", dl)
		}
	})
}

// G6: a replay returns the event to the outbox exactly once, even when
// operators race, and it is published once.
func TestG6ReplayExactlyOnce(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		br := newBroker(t, machineNATSURL())
		pub := newFaulty(br.publisher(t))
		pub.poison("p", outbox.Permanent(errBroker))
		l := newLedger()
		poison := newEvent(t, "p", 0)
		if err := b.enqueue(ctx, poison); err != nil {
			t.Fatal(err)
		}
		l.add(poison)
		r := runRelay(t, b.store, pub, outbox.RelayConfig{})
		waitUntil(t, "the permanent failure to be dead-lettered", func() bool { return r.Counters().DeadLettered == 1 })
		if c := r.Counters(); c.Retried != 0 {
			t.Fatalf("a permanent failure was retried %d times", c.Retried)
		}
		dls, err := b.store.ListDeadLetters(ctx, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})
		if err != nil || len(dls) != 1 {
			t.Fatalf("open dead letters: %v, %v", dls, err)
		}
		pub.heal("p")

		var ok, resolved atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				switch err := b.store.ReplayDeadLetter(ctx, dls[0].ID); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, outbox.ErrAlreadyResolved):
					resolved.Add(1)
				default:
					t.Errorf("replay: %v", err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != 1 || resolved.Load() != 7 {
			t.Fatalf("8 racing replays: %d succeeded, %d already resolved; want 1 and 7", ok.Load(), resolved.Load())
		}
		_, received := expectDelivered(t, b.store, br, l)
		if len(received) != 1 {
			t.Fatalf("replayed event delivered %d times", len(received))
		}
		dl, err := b.store.GetDeadLetter(ctx, dls[0].ID)
		if err != nil || !dl.Reprocessed || dl.ReprocessedAt == nil || dl.State() != outbox.DeadLetterReplayed {
			t.Fatalf("dead letter after replay: %+v, %v", dl, err)
		}
	})
}
