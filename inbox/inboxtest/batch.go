package inboxtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/outbox"
)

func processBatch[TTx any](t testing.TB, s *suite[TTx], in *inbox.Inbox[TTx], evs ...inbox.Event) []inbox.BatchResult {
	t.Helper()
	res := in.ProcessBatch(s.ctx, evs)
	if len(res) != len(evs) {
		t.Fatalf("ProcessBatch of %d events: %d results", len(evs), len(res))
	}
	return res
}

func expectBatch(t testing.TB, what string, got []inbox.BatchResult, want ...inbox.Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d results, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		r := got[i]
		if r.Err != nil {
			t.Fatalf("%s: event %d: %v", what, i, r.Err)
		}
		if r.Result != w {
			t.Fatalf("%s: event %d: got %+v (%v), want %+v (%v)", what, i, r.Result, r.Outcome, w, w.Outcome)
		}
	}
}

func (s *suite[TTx]) appliedSeqs(t testing.TB) []string {
	t.Helper()
	var got []string
	for _, r := range s.applied(t) {
		got = append(got, fmt.Sprintf("%s#%d", r.AggregateID, r.Sequence))
	}
	return got
}

// A batch is taken as if its events came one by one, ordered by aggregate
// and sequence: duplicates inside the batch and of earlier events are
// dropped, an aggregate's events in reverse order are applied in order, a
// batch event that fills a gap releases the held ones, an early one is held,
// a repeat under a new id is reported.
func testBatchOutcomes[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	x1, x2, x3, x4, x5, x7 := Event("x", 1), Event("x", 2), Event("x", 3), Event("x", 4), Event("x", 5), Event("x", 7)
	y1, y2, y3 := Event("y", 1), Event("y", 2), Event("y", 3)
	expect(t, "x#1 alone", process(t, in, s.ctx, x1), inbox.Result{Outcome: inbox.Applied, Last: 1})
	expect(t, "x#4 alone", process(t, in, s.ctx, x4), inbox.Result{Outcome: inbox.Held, Last: 1})

	x3again := Event("x", 3) // #3 under a second id, in the same batch
	res := processBatch(t, s, in, y3, x3, x1, y2, x3, x7, x3again, y1, x2, x5)
	expectBatch(t, "the batch", res,
		inbox.Result{Outcome: inbox.Applied, Last: 3},              // y3
		inbox.Result{Outcome: inbox.Applied, Released: 1, Last: 4}, // x3 releases the held x4
		inbox.Result{Outcome: inbox.Duplicate},                     // x1 seen before
		inbox.Result{Outcome: inbox.Applied, Last: 2},              // y2
		inbox.Result{Outcome: inbox.Duplicate},                     // x3 twice in the batch
		inbox.Result{Outcome: inbox.Held, Last: 5},                 // x7 waits for x6
		inbox.Result{Outcome: inbox.Repeated, Last: 4},             // x3 under a new id, after x4
		inbox.Result{Outcome: inbox.Applied, Last: 1},              // y1
		inbox.Result{Outcome: inbox.Applied, Last: 2},              // x2
		inbox.Result{Outcome: inbox.Applied, Last: 5},              // x5
	)
	want := []string{"x#1", "x#2", "x#3", "x#4", "x#5", "y#1", "y#2", "y#3"}
	if got := s.appliedSeqs(t); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	// The whole batch again: every event a duplicate. Then x6 fills the gap.
	res = processBatch(t, s, in, y3, x3, x7, x2)
	expectBatch(t, "the batch again", res, inbox.Result{Outcome: inbox.Duplicate}, inbox.Result{Outcome: inbox.Duplicate},
		inbox.Result{Outcome: inbox.Duplicate}, inbox.Result{Outcome: inbox.Duplicate})
	x6, x8, z2 := Event("x", 6), Event("x", 8), Event("z", 2)
	res = processBatch(t, s, in, x8, z2, x6)
	expectBatch(t, "x#6 fills the gap", res,
		inbox.Result{Outcome: inbox.Applied, Last: 8},              // x8 after the released x7
		inbox.Result{Outcome: inbox.Held},                          // a new aggregate starting late
		inbox.Result{Outcome: inbox.Applied, Released: 1, Last: 7}, // x6 releases x7
	)
	want = append(want, "x#6", "x#7", "x#8")
	if got := s.appliedSeqs(t); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if gaps, err := in.Gaps(s.ctx, 0); err != nil || len(gaps) != 1 || gaps[0].AggregateID != "z" {
		t.Fatalf("Gaps: %+v, %v; want z waiting for #1", gaps, err)
	}
}

// A handler failure in the middle of a batch fails that event only: the
// others commit, its aggregate's later events in the batch are held behind
// it, and its redelivery releases them.
func testBatchHandlerFailure[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	a1, a2, a3, b1, c1 := Event("a", 1), Event("a", 2), Event("a", 3), Event("b", 1), Event("c", 1)
	s.failWhen(func(ev inbox.Event) error {
		if ev.ID == a2.ID {
			return errRefused
		}
		return nil
	})
	res := processBatch(t, s, in, b1, a1, a3, a2, c1)
	var he *inbox.HandlerError
	if !errors.Is(res[3].Err, errRefused) || !errors.As(res[3].Err, &he) || he.Event.ID != a2.ID {
		t.Fatalf("a#2 with a failing handler: %v, want a *HandlerError wrapping errRefused", res[3].Err)
	}
	res = slices.Delete(res, 3, 4)
	expectBatch(t, "the others", res,
		inbox.Result{Outcome: inbox.Applied, Last: 1}, // b1
		inbox.Result{Outcome: inbox.Applied, Last: 1}, // a1
		inbox.Result{Outcome: inbox.Held, Last: 1},    // a3 behind the failed a2
		inbox.Result{Outcome: inbox.Applied, Last: 1}, // c1
	)
	if got, want := s.appliedSeqs(t), []string{"a#1", "b#1", "c#1"}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	s.failWhen(nil)
	res = processBatch(t, s, in, a2)
	expectBatch(t, "a#2 again", res, inbox.Result{Outcome: inbox.Applied, Released: 1, Last: 3})
	if got, want := s.appliedSeqs(t), []string{"a#1", "b#1", "c#1", "a#2", "a#3"}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}

	// A batch whose every handler fails applies nothing: d#2 is held
	// behind the failed d#1.
	s.failWhen(func(inbox.Event) error { return errRefused })
	res = processBatch(t, s, in, Event("d", 1), Event("e", 1), Event("d", 2))
	if !errors.Is(res[0].Err, errRefused) || !errors.Is(res[1].Err, errRefused) {
		t.Fatalf("a failing batch: %v, %v; want errRefused", res[0].Err, res[1].Err)
	}
	expectBatch(t, "d#2", res[2:], inbox.Result{Outcome: inbox.Held})
	if got := s.applied(t); len(got) != 5 {
		t.Fatalf("the failing batch left %v", got[5:])
	}
}

// A held event whose handler fails when a batch event releases it fails
// that batch event, as Handle does; the rest of the batch commits.
func testBatchReleaseFailure[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	a1, a2, a3, b1 := Event("a", 1), Event("a", 2), Event("a", 3), Event("b", 1)
	expect(t, "a#3 first", process(t, in, s.ctx, a3), inbox.Result{Outcome: inbox.Held})
	s.failWhen(func(ev inbox.Event) error {
		if ev.ID == a3.ID {
			return errRefused
		}
		return nil
	})
	res := processBatch(t, s, in, a2, b1, a1)
	if !errors.Is(res[0].Err, errRefused) {
		t.Fatalf("a#2 releasing a failing a#3: %v, want errRefused", res[0].Err)
	}
	expectBatch(t, "the others", res[1:], inbox.Result{Outcome: inbox.Applied, Last: 1}, inbox.Result{Outcome: inbox.Applied, Last: 1})
	s.failWhen(nil)
	expectBatch(t, "a#2 again", processBatch(t, s, in, a2), inbox.Result{Outcome: inbox.Applied, Released: 1, Last: 3})
	if got, want := s.appliedSeqs(t), []string{"a#1", "b#1", "a#2", "a#3"}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
}

// Invalid events: HandleBatch refuses the batch before writing, naming the
// event; ProcessBatch and DeliverBatch leave it out and take the others.
func testBatchInvalid[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	bad := Event("v", 1)
	bad.Subject = ""
	err := s.d.WithTx(s.ctx, func(tx TTx) error {
		_, err := in.HandleBatch(s.ctx, tx, []inbox.Event{Event("v", 1), bad})
		return err
	})
	var be *inbox.BatchError
	if !errors.As(err, &be) || be.Index != 1 || !errors.Is(err, inbox.ErrInvalidEvent) {
		t.Fatalf("HandleBatch with an invalid second event: %v, want a *BatchError at 1 wrapping ErrInvalidEvent", err)
	}
	v1 := Event("v", 1)
	res := processBatch(t, s, in, bad, v1)
	if !errors.Is(res[0].Err, inbox.ErrInvalidEvent) || res[1].Err != nil || res[1].Outcome != inbox.Applied {
		t.Fatalf("ProcessBatch with an invalid event: %+v", res)
	}
	errs := in.DeliverBatch(s.ctx, [][]byte{[]byte(`{"specversion":"1.0"}`), mustJSON(t, Event("v", 2)), mustJSON(t, v1)})
	if !errors.Is(errs[0], inbox.ErrInvalidEvent) || errs[1] != nil || errs[2] != nil {
		t.Fatalf("DeliverBatch: %v, want the first refused, the others nil", errs)
	}
	if got, want := s.appliedSeqs(t), []string{"v#1", "v#2"}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if res, err := in.HandleBatch(s.ctx, *new(TTx), nil); err != nil || len(res) != 0 {
		t.Fatalf("HandleBatch of nothing: %v, %v", res, err)
	}
}

// 4,000 events over 100 aggregates, shuffled, one in twenty delivered
// again later, in batches of 50 taken by 4 workers at once (each batch
// holds many aggregates, and the workers' batches overlap in them, which
// a lock order that is not fixed would deadlock on): every aggregate ends
// applied 1…40 in order, nothing is held, and the outcomes add up. An
// event refused because the database is busy (outbox.ErrBusy: SQLite's
// write lock not had in time, under the race detector on a busy machine)
// is delivered again after the stream, as a broker would.
func testShuffledBatches[TTx any](t *testing.T, s *suite[TTx]) {
	const aggregates, per, workers, size = 100, 40, 4, 50
	evs := Stream(aggregates, per, 2)
	for i := 0; i < len(evs); i += 20 {
		evs = append(evs, evs[i])
	}
	in := s.inbox()
	var (
		c     tally
		mu    sync.Mutex
		again []inbox.Event // refused as busy: delivered again
	)
	take := func(batch []inbox.Event) {
		for i, r := range in.ProcessBatch(s.ctx, batch) {
			if errors.Is(r.Err, outbox.ErrBusy) {
				mu.Lock()
				again = append(again, batch[i])
				mu.Unlock()
				continue
			}
			c.add(r.Result, r.Err)
		}
	}
	next := make(chan []inbox.Event)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for batch := range next {
				take(batch)
			}
		})
	}
	for b := range slices.Chunk(evs, size) {
		next <- b
	}
	close(next)
	wg.Wait()
	for round := 0; len(again) > 0; round++ {
		if round == 10 {
			t.Fatalf("%d events still refused as busy after 10 rounds", len(again))
		}
		t.Logf("delivering again %d events refused as busy", len(again))
		redo := again
		again = nil
		for b := range slices.Chunk(redo, size) {
			take(b)
		}
	}
	checkStream(t, s, &c, len(evs), aggregates, per)
}
