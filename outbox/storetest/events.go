package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// testPendingEvents: an aggregate's events in the outbox, by sequence, with
// their bookkeeping; those behind an open dead letter are parked until it is
// resolved; published events are gone; other aggregates are not listed.
func testPendingEvents[TTx any](t *testing.T, s *suite[TTx]) {
	r, ok := s.d.(outbox.EventReader)
	if !ok {
		t.Fatalf("%T does not implement outbox.EventReader", s.d)
	}
	pending := func(t *testing.T, aggID string, limit int) []outbox.PendingEvent {
		t.Helper()
		evs, err := r.PendingEvents(s.ctx, "order", aggID, limit)
		if err != nil {
			t.Fatalf("PendingEvents(%s): %v", aggID, err)
		}
		return evs
	}
	events := []outbox.Event{s.ev("A"), s.ev("A"), s.ev("A"), s.ev("B")}
	events[0].IdempotencyKey = "pending-key"
	enq := s.enqueue(t, events...)
	if evs := pending(t, "nobody", 10); len(evs) != 0 {
		t.Fatalf("PendingEvents of an aggregate without events = %+v", evs)
	}
	evs := pending(t, "A", 10)
	if len(evs) != 3 {
		t.Fatalf("PendingEvents(A) = %d events, want 3", len(evs))
	}
	for i, e := range evs {
		checkRecord(t, e.Record, events[i], enq[i])
		if e.Attempts != 0 || e.Parked || e.NextAttemptAt.IsZero() || e.LastError != "" {
			t.Errorf("new event %+v: want no attempt, due, not parked", e)
		}
	}
	if evs := pending(t, "A", 2); len(evs) != 2 || evs[1].Sequence != 2 {
		t.Fatalf("PendingEvents(A, limit 2) = %+v, want #1 and #2", evs)
	}

	// A#1 fails once: in retry, with its error and next attempt.
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1")
	outcomes := make([]outbox.Outcome, 2)
	for i, rec := range b.Records() {
		outcomes[i] = published
		if rec.AggregateID == "A" {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "broker said <no>", Delay: time.Hour}
		}
	}
	s.finish(t, b, outcomes...)
	if evs := pending(t, "B", 10); len(evs) != 0 {
		t.Fatalf("published B#1 still pending: %+v", evs)
	}
	evs = pending(t, "A", 10)
	if e := evs[0]; e.Attempts != 1 || e.LastError != "broker said <no>" || e.FirstFailedAt.IsZero() ||
		e.NextAttemptAt.Before(time.Now().Add(50*time.Minute)) || e.Parked {
		t.Fatalf("A#1 after a retry: %+v, want one attempt, its error and a next attempt an hour on", e)
	}

	// A#1 dead-lettered: A#2 and A#3 are parked until it is discarded.
	s.enqueue(t, s.ev("C"))
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/C#1")
	s.finishAll(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "poison"})
	evs = pending(t, "A", 10)
	if len(evs) != 3 || evs[0].Parked {
		t.Fatalf("PendingEvents(A) = %+v", evs)
	}
	dls := s.list(t, outbox.DeadLetterFilter{AggregateID: "C"})
	s.enqueue(t, s.ev("C"), s.ev("C"))
	evs = pending(t, "C", 10)
	if len(evs) != 2 || !evs[0].Parked || !evs[1].Parked || evs[0].Sequence != 2 {
		t.Fatalf("PendingEvents(C) behind its dead letter = %+v, want #2 and #3 parked", evs)
	}
	if err := s.d.DiscardDeadLetter(s.ctx, dls[0].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if evs = pending(t, "C", 10); evs[0].Parked || evs[1].Parked {
		t.Fatalf("PendingEvents(C) after the discard = %+v, want none parked", evs)
	}
}

// testErrorContains: ListDeadLetters and ReplayDeadLetters select by a piece
// of the error text, case-sensitively; an invalid one is refused.
func testErrorContains[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("B"), s.ev("C"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1", "order/C#1")
	outcomes := make([]outbox.Outcome, 3)
	for i, rec := range b.Records() {
		msg := map[string]string{"A": "webhook: 410 Gone", "B": "webhook: 404 not found", "C": "nats: no responders"}[rec.AggregateID]
		outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: msg}
	}
	s.finish(t, b, outcomes...)
	ids := func(dls []outbox.DeadLetter) []string {
		var out []string
		for _, d := range dls {
			out = append(out, d.AggregateID)
		}
		return out
	}
	for _, c := range []struct {
		text string
		want []string
	}{
		{"webhook", []string{"A", "B"}},
		{"410", []string{"A"}},
		{"Gone", []string{"A"}},
		{"gone", nil},
		{"%", nil}, // no pattern syntax
		{"_", nil},
	} {
		got := ids(s.list(t, outbox.DeadLetterFilter{ErrorContains: c.text}))
		if len(got) != len(c.want) || (len(got) > 0 && !sameSet(got, c.want)) {
			t.Errorf("ErrorContains %q lists %v, want %v", c.text, got, c.want)
		}
	}
	n, err := s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{ErrorContains: "404"})
	if err != nil || n != 1 {
		t.Fatalf("ReplayDeadLetters(ErrorContains 404) = %d, %v; want 1", n, err)
	}
	if got := ids(s.list(t, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})); !sameSet(got, []string{"A", "C"}) {
		t.Errorf("open after the replay: %v, want A and C", got)
	}
	if _, err := s.d.ListDeadLetters(s.ctx, outbox.DeadLetterFilter{ErrorContains: "a\x00b"}); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Errorf("ErrorContains with NUL: %v, want ErrInvalidFilter", err)
	}
}
