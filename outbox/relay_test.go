package outbox_test

import (
	"context"
	"database/sql"
	"path/filepath"
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
