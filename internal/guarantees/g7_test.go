package guarantees_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// poisonSetup enqueues a poison aggregate "p" (its first event fails) with
// four events after it, and ten healthy aggregates.
func poisonSetup(t *testing.T, b *backend, l *ledger) (poisoned []outbox.Event) {
	t.Helper()
	ctx := context.Background()
	for i := range 5 {
		e := newEvent(t, "p", i)
		if err := b.enqueue(ctx, e); err != nil {
			t.Fatal(err)
		}
		poisoned = append(poisoned, e)
	}
	produce(ctx, t, b, l, "ok", 10, 10)
	return poisoned
}

// deliveredOf counts the events of aggregate agg on the broker.
func deliveredOf(t *testing.T, br *broker, agg string) int {
	t.Helper()
	n := 0
	for _, ce := range br.received(t) {
		if ce.Subject == agg {
			n++
		}
	}
	return n
}

// marker enqueues one event of a fresh aggregate and waits for the broker to
// have it: proof that the relay made passes after everything before it.
func marker(t *testing.T, b *backend, br *broker, l *ledger, name string) {
	t.Helper()
	e := newEvent(t, name, 0)
	if err := b.enqueue(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	l.add(e)
	waitUntil(t, "marker "+name, func() bool { return deliveredOf(t, br, name) == 1 })
}

var fastRetry = outbox.RetryPolicy{Base: time.Millisecond, Cap: 5 * time.Millisecond, MaxAttempts: 3}

// G7: a failing event holds back only its own aggregate; once dead-lettered
// its successors stay parked until a replay, then flow in sequence.
func TestG7PoisonIsolationAndParking(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		br := newBroker(t, machineNATSURL())
		pub := newFaulty(br.publisher(t))
		pub.poison("p", errBroker)
		l := newLedger()
		poisoned := poisonSetup(t, b, l)

		// While p's head keeps failing, every other aggregate drains.
		slow := runRelayUntil(t, b.store, pub, outbox.RelayConfig{Retry: outbox.RetryPolicy{Base: time.Millisecond, Cap: 5 * time.Millisecond, MaxAttempts: 1_000_000}})
		waitUntil(t, "healthy aggregates to drain", func() bool { return len(br.received(t)) == l.total() })
		if n := deliveredOf(t, br, "p"); n != 0 {
			t.Fatalf("%d events of the failing aggregate got through", n)
		}
		slow()

		// With few attempts the head is dead-lettered; the rest stay parked.
		r := runRelay(t, b.store, pub, outbox.RelayConfig{Retry: fastRetry})
		waitUntil(t, "the head to be dead-lettered", func() bool { return r.Counters().DeadLettered == 1 })
		marker(t, b, br, l, "m1")
		if n := deliveredOf(t, br, "p"); n != 0 {
			t.Fatalf("%d parked events were published behind a dead letter", n)
		}
		st, err := b.store.Stats(ctx)
		if err != nil || st.Pending != 4 || st.DeadLetters != 1 {
			t.Fatalf("stats with 4 parked events and 1 dead letter: %+v, %v", st, err)
		}

		// Replayed with the broker healed: 1..5 flow in sequence.
		pub.heal("p")
		dls, err := b.store.ListDeadLetters(ctx, outbox.DeadLetterFilter{AggregateID: "p"})
		if err != nil || len(dls) != 1 || dls[0].EventID != poisoned[0].ID {
			t.Fatalf("dead letters of p: %+v, %v", dls, err)
		}
		if err := b.store.ReplayDeadLetter(ctx, dls[0].ID); err != nil {
			t.Fatal(err)
		}
		l.add(poisoned...)
		expectDelivered(t, b.store, br, l)
	})
}

// G7: discarding the dead letter releases the parked events, which flow in
// sequence without it.
func TestG7DiscardReleasesParkedEvents(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		br := newBroker(t, machineNATSURL())
		pub := newFaulty(br.publisher(t))
		pub.poison("p", outbox.Permanent(errBroker))
		l := newLedger()
		poisonSetup(t, b, l)
		r := runRelay(t, b.store, pub, outbox.RelayConfig{Retry: fastRetry})
		waitUntil(t, "the head to be dead-lettered", func() bool { return r.Counters().DeadLettered == 1 })
		pub.heal("p")
		marker(t, b, br, l, "m1")
		if n := deliveredOf(t, br, "p"); n != 0 {
			t.Fatalf("%d parked events were published behind a dead letter", n)
		}
		dls, err := b.store.ListDeadLetters(ctx, outbox.DeadLetterFilter{AggregateID: "p", State: outbox.DeadLetterOpen})
		if err != nil || len(dls) != 1 {
			t.Fatalf("dead letters of p: %+v, %v", dls, err)
		}
		if err := b.store.DiscardDeadLetter(ctx, dls[0].ID, "bad data, fixed by hand"); err != nil {
			t.Fatal(err)
		}
		waitDrained(t, b.store)
		var seqs []int64
		for _, ce := range br.received(t) {
			if ce.Subject == "p" {
				seqs = append(seqs, ce.Sequence)
			}
		}
		if !slices.Equal(seqs, []int64{2, 3, 4, 5}) {
			t.Fatalf("after discarding sequence 1, p delivered sequences %v, want [2 3 4 5]", seqs)
		}
		dl, err := b.store.GetDeadLetter(ctx, dls[0].ID)
		if err != nil || dl.State() != outbox.DeadLetterDiscarded || dl.DiscardReason != "bad data, fixed by hand" {
			t.Fatalf("discarded dead letter: %+v, %v", dl, err)
		}
	})
}

// G7: with MoveOnPastDeadLetters an aggregate's later events flow past its
// dead letter.
func TestG7MoveOnPastDeadLetters(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, b *backend) {
		br := newBroker(t, machineNATSURL())
		pub := newFaulty(br.publisher(t))
		l := newLedger()
		poisoned := poisonSetup(t, b, l)
		pub.poison(poisoned[0].ID.String(), outbox.Permanent(errBroker))
		runRelay(t, b.store, pub, outbox.RelayConfig{Retry: fastRetry, MoveOnPastDeadLetters: true})
		waitDrained(t, b.store)
		st, err := b.store.Stats(context.Background())
		if err != nil || st.DeadLetters != 1 {
			t.Fatalf("stats: %+v, %v; want the head dead-lettered", st, err)
		}
		var seqs []int64
		for _, ce := range br.received(t) {
			if ce.Subject == "p" {
				seqs = append(seqs, ce.Sequence)
			}
		}
		if !slices.Equal(seqs, []int64{2, 3, 4, 5}) {
			t.Fatalf("p delivered sequences %v past its dead letter, want [2 3 4 5]", seqs)
		}
		_ = poisoned
	})
}

// runRelayUntil runs a relay and returns a function that stops it.
func runRelayUntil(t *testing.T, s outbox.Store, p outbox.Publisher, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	cfg.PollInterval = 20 * time.Millisecond
	r := outbox.NewRelay(s, p, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}
