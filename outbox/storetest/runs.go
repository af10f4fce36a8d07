package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// runsOK checks the shape every claim must have, runs or not: each
// aggregate's events are consecutive sequences from its head, in sequence
// order, and at most p.Limit in all, at most max(p.RunLength, 1) per
// aggregate.
func runsOK(t *testing.T, p outbox.ClaimParams, recs []outbox.Record) {
	t.Helper()
	if len(recs) > p.Limit {
		t.Fatalf("claim(%+v) returned %d events", p, len(recs))
	}
	last := map[string]int64{}
	count := map[string]int{}
	for _, r := range recs {
		agg := r.AggregateType + "/" + r.AggregateID
		if prev, ok := last[agg]; ok && r.Sequence != prev+1 {
			t.Fatalf("claim(%+v) = %v: %s#%d follows #%d", p, keys(recs), agg, r.Sequence, prev)
		}
		last[agg] = r.Sequence
		count[agg]++
		if count[agg] > max(p.RunLength, 1) {
			t.Fatalf("claim(%+v) = %v: more than the run length of %s", p, keys(recs), agg)
		}
	}
}

// claimRuns claims with runs, checks the batch's shape and, when the driver
// takes runs, that it holds exactly want in this order.
func (s *suite[TTx]) claimRuns(t *testing.T, runs bool, p outbox.ClaimParams, want ...string) outbox.Batch {
	t.Helper()
	b := s.claimP(t, p)
	got := keys(b.Records())
	runsOK(t, p, b.Records())
	if runs && !sameSet(got, want) {
		_ = b.Release(s.ctx)
		t.Fatalf("claim(%+v) = %v, want %v", p, got, want)
	}
	return b
}

// testRuns: a claim with a run length takes each head with the events that
// follow it, as far as they are due and not parked, within the limits.
func testRuns[TTx any](t *testing.T, s *suite[TTx], runs bool) {
	s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("A"), s.ev("A"), s.ev("B"), s.ev("B"), s.ev("C"))
	all := outbox.ClaimParams{Limit: 100, RunLength: 100}
	b := s.claimRuns(t, runs, all, "order/A#1", "order/A#2", "order/A#3", "order/A#4", "order/B#1", "order/B#2", "order/C#1")
	s.release(t, b)

	two := outbox.ClaimParams{Limit: 100, RunLength: 2}
	b = s.claimRuns(t, runs, two, "order/A#1", "order/A#2", "order/B#1", "order/B#2", "order/C#1")
	s.release(t, b)

	// The limit counts every event; heads come before runs.
	small := outbox.ClaimParams{Limit: 4, RunLength: 100}
	b = s.claimP(t, small)
	runsOK(t, small, b.Records())
	if got := keys(b.Records()); !contains(got, "order/A#1", "order/B#1", "order/C#1") || runs && len(got) != 4 {
		_ = b.Release(s.ctx)
		t.Fatalf("claim(%+v) = %v, want the three heads and one more", small, got)
	}
	s.release(t, b)

	// A released event goes back as it was; a retried one is charged.
	b = s.claimRuns(t, runs, outbox.ClaimParams{Limit: 100, RunLength: 100},
		"order/A#1", "order/A#2", "order/A#3", "order/A#4", "order/B#1", "order/B#2", "order/C#1")
	outcomes := make([]outbox.Outcome, len(b.Records()))
	for i, r := range b.Records() {
		switch {
		case r.AggregateID != "A" || r.Sequence == 1:
			outcomes[i] = published
		case r.Sequence == 2:
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "broker said no", Delay: time.Millisecond}
		default:
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeReleased}
		}
	}
	s.finish(t, b, outcomes...)
	want := []string{"order/A#2", "order/A#3", "order/A#4"}
	if !runs {
		want = want[:1] // the driver took heads only: A#3 and A#4 are still pending
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b = s.claimP(t, all)
		if len(b.Records()) > 0 || time.Now().After(deadline) {
			break
		}
		s.release(t, b) // A#2 is not due yet
		time.Sleep(5 * time.Millisecond)
	}
	if got := keys(b.Records()); runs && !slices.Equal(got, want) || !runs && !contains(got, want...) {
		_ = b.Release(s.ctx)
		t.Fatalf("after a retry and releases: claim = %v, want %v", got, want)
	}
	for _, r := range b.Records() {
		if !runs {
			break // A#2 was never claimed
		}
		if wantAttempts := map[int64]int{2: 1, 3: 0, 4: 0}[r.Sequence]; r.Attempts != wantAttempts || (r.Sequence > 2) != (r.LastError == "") {
			t.Errorf("A#%d: attempts %d, last error %q; want %d attempts, an error only on A#2", r.Sequence, r.Attempts, r.LastError, wantAttempts)
		}
	}
	s.finishAll(t, b, published)
	s.expectCounts(t, int64(3-len(want)), 0, 0)
}

// testRunsStop: a run ends at the first event that is parked or not due,
// even if later ones are neither: they must not overtake it.
func testRunsStop[TTx any](t *testing.T, s *suite[TTx], runs bool) {
	moveOn := outbox.ClaimParams{Limit: 1, MoveOnPastDeadLetters: true}
	// Parked: E#1 and E#2 dead-lettered, E#1 replayed; E#3 is parked behind
	// E#2's open dead letter.
	s.enqueue(t, s.ev("E"), s.ev("E"), s.ev("E"))
	s.deadLetter(t, "poison", "order/E#1")
	b := s.claimExpect(t, moveOn, "order/E#2")
	s.finishAll(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "poison"})
	e1 := s.list(t, outbox.DeadLetterFilter{AggregateID: "E", State: outbox.DeadLetterOpen})[0]
	if err := s.d.ReplayDeadLetter(s.ctx, e1.ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	b = s.claimRuns(t, runs, outbox.ClaimParams{Limit: 10, RunLength: 10}, "order/E#1")
	s.finishAll(t, b, published)
	b = s.claimExpect(t, moveOn, "order/E#3")
	s.finishAll(t, b, published)

	// Not due: F#1 dead-lettered and replayed, F#2 waiting for a retry;
	// F#3 is due but must wait behind F#2.
	s.enqueue(t, s.ev("F"), s.ev("F"), s.ev("F"))
	s.deadLetter(t, "poison", "order/F#1")
	b = s.claimExpect(t, moveOn, "order/F#2")
	s.finishAll(t, b, outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "later", Delay: time.Hour})
	f1 := s.list(t, outbox.DeadLetterFilter{AggregateID: "F", State: outbox.DeadLetterOpen})[0]
	if err := s.d.ReplayDeadLetter(s.ctx, f1.ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	b = s.claimRuns(t, runs, outbox.ClaimParams{Limit: 10, RunLength: 10, MoveOnPastDeadLetters: true}, "order/F#1")
	s.finishAll(t, b, published)
	s.expectNothing(t, outbox.ClaimParams{Limit: 10, RunLength: 10, MoveOnPastDeadLetters: true})
}

// testRunsHeld: a claim never takes events of an aggregate whose head
// another open batch holds, runs included.
func testRunsHeld[TTx any](t *testing.T, s *suite[TTx], runs bool) {
	s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("A"))
	first := s.claimRuns(t, runs, outbox.ClaimParams{Limit: 2, RunLength: 10}, "order/A#1", "order/A#2")
	s.enqueue(t, s.ev("B"), s.ev("B"))
	second := s.claimRuns(t, runs, outbox.ClaimParams{Limit: 100, RunLength: 10}, "order/B#1", "order/B#2")
	for _, r := range second.Records() {
		if r.AggregateID == "A" {
			t.Fatalf("claims %v and %v both hold aggregate A", keys(first.Records()), keys(second.Records()))
		}
	}
	s.release(t, second)
	s.release(t, first)
}

func contains(got []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}
