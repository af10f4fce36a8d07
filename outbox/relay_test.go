package outbox_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// shortPublisher acknowledges nothing: it returns no results at all, as a
// buggy publisher might.
type shortPublisher struct{ calls atomic.Int64 }

func (p *shortPublisher) Publish(context.Context, []outbox.Message) []error {
	p.calls.Add(1)
	return nil
}
func (p *shortPublisher) Close() error { return nil }

// A publisher that reports fewer results than messages has confirmed nothing:
// the events must stay in the outbox (G2), not be taken as published.
func TestRelayTreatsMissingResultsAsFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "o.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	client := outbox.NewClient[*sql.Tx](store)
	if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "a", AggregateID: "1", Type: "t", Payload: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	pub := &shortPublisher{}
	relay := outbox.NewRelay(store, pub, outbox.RelayConfig{
		PollInterval: 5 * time.Millisecond,
		Retry:        outbox.RetryPolicy{Base: time.Millisecond, Cap: time.Millisecond, MaxAttempts: 1000},
	})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(rctx) }()
	for deadline := time.Now().Add(time.Minute); relay.Counters().Retried < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay never retried the unconfirmed event")
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := relay.Counters(); c.Published != 0 || st.Pending != 1 || st.Retrying != 1 {
		t.Fatalf("counters %+v, stats %+v: an unconfirmed event left the outbox", c, st)
	}
}

// switchPublisher fails every message with one connection error while down,
// and, while up, fails only the events of poisoned aggregates (with an
// error of their own) and records the rest in the order acknowledged.
type switchPublisher struct {
	mu       sync.Mutex
	down     bool
	poisoned map[string]bool
	got      map[string][]int64 // aggregate → sequences acknowledged
}

func (p *switchPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		switch {
		case p.down:
			errs[i] = fmt.Errorf("nats: connection closed (%w)", outbox.ErrBrokerUnavailable)
		case p.poisoned[m.AggregateID]:
			errs[i] = fmt.Errorf("the consumer's schema rejects %s", m.ID)
		default:
			p.got[m.AggregateID] = append(p.got[m.AggregateID], m.Sequence)
		}
	}
	return errs
}

func (p *switchPublisher) Close() error { return nil }

func (p *switchPublisher) set(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

func (p *switchPublisher) received() map[string][]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.got)
}

// relayOn starts a relay with retries so short that a few milliseconds of
// failures exhaust an event's attempts, and stops it at cleanup.
func relayOn(t *testing.T, store *sqlitestore.Driver, pub outbox.Publisher) *outbox.Relay {
	t.Helper()
	relay := outbox.NewRelay(store, pub, outbox.RelayConfig{
		PollInterval: 2 * time.Millisecond,
		Retry:        outbox.RetryPolicy{Base: time.Millisecond, Cap: 2 * time.Millisecond, MaxAttempts: 3},
	})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return relay
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func openStore(t *testing.T) *sqlitestore.Driver {
	t.Helper()
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "o.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store
}

// A broker outage many times longer than the retry policy's attempts
// (3 attempts within a few milliseconds; the outage lasts 60 probes)
// dead-letters nothing and charges no attempt; once the broker is back,
// every event arrives in sequence.
func TestRelayRidesOutABrokerOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	pub := &switchPublisher{down: true, got: map[string][]int64{}}
	var events []outbox.Event
	for i := range 12 {
		events = append(events, outbox.Event{AggregateType: "order", AggregateID: fmt.Sprint("o-", i%4), Type: "t", Payload: []byte(`{}`)})
	}
	if _, err := outbox.NewClient(store).Enqueue(ctx, events...); err != nil {
		t.Fatal(err)
	}
	relay := relayOn(t, store, pub)
	waitFor(t, "60 probes of the broker", func() bool { return relay.Counters().Outages >= 60 })
	if c := relay.Counters(); !c.BrokerDown || c.Retried != 0 || c.DeadLettered != 0 || c.Published != 0 {
		t.Fatalf("during the outage: counters %+v", c)
	}
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 12 || st.Retrying != 0 || st.DeadLetters != 0 {
		t.Fatalf("during the outage: stats %+v, want 12 pending, none charged an attempt, no dead letter", st)
	}

	pub.set(false)
	waitFor(t, "every event", func() bool { return relay.Counters().Published == 12 })
	for agg, seqs := range pub.received() {
		if !slices.Equal(seqs, []int64{1, 2, 3}) {
			t.Errorf("%s arrived as %v, want [1 2 3]", agg, seqs)
		}
	}
	if c := relay.Counters(); c.BrokerDown || c.DeadLettered != 0 {
		t.Fatalf("after the outage: counters %+v", c)
	}
}

// While the broker is up, an event that fails on its own, beside others
// that go through or alone in its batch, is still charged its attempts and
// dead-lettered; its aggregate's later events wait behind it.
func TestRelayDeadLettersAPoisonEventWhileTheBrokerIsUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	pub := &switchPublisher{poisoned: map[string]bool{"poison": true}, got: map[string][]int64{}}
	ev := func(agg string) outbox.Event {
		return outbox.Event{AggregateType: "order", AggregateID: agg, Type: "t", Payload: []byte(`{}`)}
	}
	if _, err := outbox.NewClient(store).Enqueue(ctx, ev("poison"), ev("poison"), ev("a"), ev("b"), ev("a")); err != nil {
		t.Fatal(err)
	}
	relay := relayOn(t, store, pub)
	waitFor(t, "the poison event's dead-lettering", func() bool { return relay.Counters().DeadLettered == 1 })
	waitFor(t, "the healthy events", func() bool { return relay.Counters().Published == 3 })
	st, err := store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 1 || st.Pending != 1 {
		t.Fatalf("stats %+v: want the poison event dead-lettered and its successor parked", st)
	}
	if c := relay.Counters(); c.Outages != 0 || c.BrokerDown {
		t.Fatalf("counters %+v: a failing event was taken for an outage", c)
	}
}

// Each retry is logged at warn and each dead-lettering at error, with the
// event's id, type, aggregate and attempt; the payload never.
func TestRelayLogsRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	var buf syncBuffer
	pub := &switchPublisher{poisoned: map[string]bool{"poison": true}, got: map[string][]int64{}}
	enq, err := outbox.NewClient(store).Enqueue(ctx,
		outbox.Event{AggregateType: "order", AggregateID: "poison", Type: "order.created", Payload: []byte(`{"card":"4111-secret"}`)})
	if err != nil {
		t.Fatal(err)
	}
	relay := outbox.NewRelay(store, pub, outbox.RelayConfig{
		PollInterval: 2 * time.Millisecond,
		Retry:        outbox.RetryPolicy{Base: time.Millisecond, Cap: 2 * time.Millisecond, MaxAttempts: 2},
		Logger:       slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(rctx) }()
	waitFor(t, "the dead-lettering", func() bool { return relay.Counters().DeadLettered == 1 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var warn, errLine map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch rec["level"] {
		case "WARN":
			warn = rec
		case "ERROR":
			errLine = rec
		}
	}
	id := enq[0].ID.String()
	for name, rec := range map[string]map[string]any{"retry (warn)": warn, "dead-lettering (error)": errLine} {
		if rec == nil {
			t.Fatalf("no %s line in:\n%s", name, buf.String())
		}
		if rec["event_id"] != id || rec["event_type"] != "order.created" || rec["aggregate_id"] != "poison" || rec["attempt"] == nil || rec["err"] == nil {
			t.Errorf("%s line lacks the event's details: %v", name, rec)
		}
	}
	if errLine["attempt"] != float64(2) {
		t.Errorf("dead-lettered at attempt %v, want 2", errLine["attempt"])
	}
	if strings.Contains(buf.String(), "4111-secret") {
		t.Error("the log shows an event's payload")
	}
}

// syncBuffer is a bytes.Buffer safe for the relay's workers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// funcPublisher fails every message with err.
type funcPublisher struct{ err error }

func (p funcPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	return outbox.AllFailed(len(msgs), p.err)
}
func (funcPublisher) Close() error { return nil }

// Several events failing with one and the same error of their own (a fixed
// "unroutable" text) are not an outage: the broker answered. They are
// charged and dead-lettered, and the broker is not reported down.
func TestRelayDeadLettersEventsThatFailAlike(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	var events []outbox.Event
	for _, agg := range []string{"a", "b", "c"} {
		events = append(events, outbox.Event{AggregateType: "order", AggregateID: agg, Type: "t", Payload: []byte(`{}`)})
	}
	if _, err := outbox.NewClient(store).Enqueue(ctx, events...); err != nil {
		t.Fatal(err)
	}
	relay := relayOn(t, store, funcPublisher{err: errors.New("rabbitmq: no queue bound for routing key t")})
	waitFor(t, "the three dead letters", func() bool { return relay.Counters().DeadLettered == 3 })
	if c := relay.Counters(); c.Outages != 0 || c.BrokerDown {
		t.Fatalf("counters %+v: failures of the events were taken for an outage", c)
	}
}
