package sqlitestore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// TestReplayRestoresOrder dead-letters two events of one aggregate (moving
// on past the first), replays them in reverse order, and checks that the
// aggregate then flows in sequence order from the lowest.
func TestReplayRestoresOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	moveOn := outbox.ClaimParams{MoveOnPastDeadLetters: true}
	enqueue(t, d, ev("order", "a", "x"), ev("order", "a", "y"), ev("order", "a", "z"), ev("order", "a", "w"))
	finish(t, claim(t, d, moveOn), deadLet) // a/1
	finish(t, claim(t, d, moveOn), published)
	finish(t, claim(t, d, moveOn), deadLet) // a/3
	dls, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})
	if err != nil || len(dls) != 2 || dls[0].Sequence != 1 || dls[1].Sequence != 3 {
		t.Fatalf("open dead letters: %+v, %v", dls, err)
	}
	// a/4 is parked behind the dead letters.
	b := claim(t, d, outbox.ClaimParams{})
	if len(b.Records()) != 0 {
		t.Fatalf("parked aggregate claimed %q", keys(b.Records()))
	}
	_ = b.Release(ctx)

	if err := d.ReplayDeadLetter(ctx, dls[1].ID); err != nil { // a/3: the head, ahead of a/4
		t.Fatal(err)
	}
	b = claim(t, d, moveOn)
	if got := keys(b.Records()); got != "a/3" {
		t.Fatalf("after replaying a/3: claimed %q, want a/3", got)
	}
	_ = b.Release(ctx)
	if err := d.ReplayDeadLetter(ctx, dls[0].ID); err != nil { // a/1: takes the head from a/3
		t.Fatal(err)
	}
	if n := count(t, d, `SELECT count(*) FROM {{outbox}} WHERE head = 1`); n != 1 {
		t.Fatalf("%d heads for one aggregate, want 1", n)
	}
	for _, want := range []string{"a/1", "a/3", "a/4"} {
		b = claim(t, d, outbox.ClaimParams{})
		if got := keys(b.Records()); got != want {
			t.Fatalf("after the replays: claimed %q, want %s", got, want)
		}
		if r := b.Records()[0]; r.Attempts != 0 || r.LastError != "" {
			t.Fatalf("%s: attempts %d, last error %q after replay", want, r.Attempts, r.LastError)
		}
		finish(t, b, published)
	}
	if n := count(t, d, `SELECT count(*) FROM {{outbox}}`); n != 0 {
		t.Fatalf("%d events left", n)
	}
}

// TestReplayAllOfOneAggregate replays two dead letters of one aggregate in
// one call (one INSERT ... SELECT) and checks the head flag.
func TestReplayAllOfOneAggregate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	moveOn := outbox.ClaimParams{MoveOnPastDeadLetters: true}
	enqueue(t, d, ev("order", "a", "x"), ev("order", "a", "y"), ev("order", "a", "z"))
	finish(t, claim(t, d, moveOn), deadLet) // a/1
	finish(t, claim(t, d, moveOn), deadLet) // a/2
	n, err := d.ReplayDeadLetters(ctx, outbox.DeadLetterFilter{AggregateID: "a"})
	if err != nil || n != 2 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 2", n, err)
	}
	for _, want := range []string{"a/1", "a/2", "a/3"} {
		b := claim(t, d, outbox.ClaimParams{})
		if got := keys(b.Records()); got != want {
			t.Fatalf("claimed %q, want %s", got, want)
		}
		finish(t, b, published)
	}
}

// TestReplayKeepsFreeIdempotencyKey: a dead letter's idempotency key goes
// back with it unless a newer pending event took the key meanwhile.
func TestReplayKeepsFreeIdempotencyKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	for _, agg := range []string{"a", "b"} {
		e := ev("order", agg, "x")
		e.IdempotencyKey = "key-" + agg
		enqueue(t, d, e)
	}
	finish(t, claim(t, d, outbox.ClaimParams{}), deadLet)
	taker := ev("order", "c", "x")
	taker.IdempotencyKey = "key-b"
	enqueue(t, d, taker)
	if n, err := d.ReplayDeadLetters(ctx, outbox.DeadLetterFilter{}); err != nil || n != 2 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 2", n, err)
	}
	b := claim(t, d, outbox.ClaimParams{})
	defer func() { _ = b.Release(ctx) }()
	got := map[string]string{}
	for _, r := range b.Records() {
		got[r.AggregateID] = r.IdempotencyKey
	}
	if want := map[string]string{"a": "key-a", "b": "", "c": "key-b"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("idempotency keys after replay: %v, want %v", got, want)
	}
}

func TestListLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	if _, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{State: "bogus"}); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Fatalf("an unknown state: %v, want ErrInvalidFilter", err)
	}
	if _, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{Limit: -1}); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Fatalf("a negative limit: %v, want ErrInvalidFilter", err)
	}
	// More than MaxListLimit dead letters, written directly.
	if _, err := d.DB().ExecContext(ctx, sqlf(d, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1005)
		INSERT INTO {{dlq}} (event_id, aggregate_type, aggregate_id, event_type, payload, sequence,
			retry_count, created_at, first_failed_at, moved_to_dlq_at)
		SELECT printf('01890a5d-ac96-774b-bcce-%012d', i), 'order', 'o' || i, 'x', '{}', 1, 1, 0, 0, 0 FROM n`)); err != nil {
		t.Fatal(err)
	}
	for limit, want := range map[int]int{0: sqlitestore.DefaultListLimit, 5000: sqlitestore.MaxListLimit, 7: 7} {
		got, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{Limit: limit})
		if err != nil || len(got) != want {
			t.Errorf("limit %d: %d dead letters, %v; want %d", limit, len(got), err, want)
		}
	}
}
