// Package storetest is the conformance suite every outbox storage driver
// runs. A driver's test calls Run with a Harness that makes a fresh, migrated
// driver per subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness[pgx.Tx]{
//			New:               func(t *testing.T) outbox.Driver[pgx.Tx] { ... },
//			ConcurrentWriters: true,
//		})
//	}
//
// The suite uses the driver only through outbox.Client and the Driver
// interface, so it knows nothing about SQL. Each subtest runs in parallel
// with the others, on its own driver.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/outbox"
)

// Harness describes the driver under test.
type Harness[TTx any] struct {
	// New returns a driver on a fresh, migrated, empty database, released
	// when t ends (t.Cleanup).
	New func(t *testing.T) outbox.Driver[TTx]
	// ConcurrentWriters says that two write transactions may be open at
	// once: an open Batch does not block writers or other claims. When it
	// is false (SQLite: one writer at a time, an open Batch holds the write
	// lock) the suite never writes or claims while a batch or transaction
	// of its own is open, and skips the tests that need two writers at once.
	ConcurrentWriters bool
	// Named returns a driver of the outbox called name on the same database
	// as d (a driver New made), migrated, released when t ends. The suite
	// runs two named outboxes side by side with it.
	Named func(t *testing.T, d outbox.Driver[TTx], name string) outbox.Driver[TTx]
	// Runs says that the driver takes runs when a claim asks for them
	// (ClaimParams.RunLength); without it the suite checks only that what
	// Claim returns has a run's shape.
	Runs bool
}

// opTimeout bounds each test; a driver that hangs fails instead of
// stalling the run.
const opTimeout = 60 * time.Second

type test[TTx any] struct {
	name string
	// concurrent marks tests that need two write transactions open at once.
	concurrent bool
	fn         func(t *testing.T, s *suite[TTx])
}

// Run runs the conformance suite against the driver h makes.
func Run[TTx any](t *testing.T, h Harness[TTx]) {
	t.Helper()
	if h.New == nil || h.Named == nil {
		t.Fatal("storetest: Harness.New and Harness.Named are required")
	}
	tests := []test[TTx]{
		{name: "SequencesPerAggregate", fn: testSequences[TTx]},
		{name: "ConcurrentEnqueueSequences", fn: testConcurrentEnqueue[TTx]},
		{name: "RollbackLeavesNoGap", fn: testRollbackNoGap[TTx]},
		{name: "Duplicates", fn: testDuplicates[TTx]},
		{name: "InvalidEventsRefused", fn: testInvalidEvents[TTx]},
		{name: "ClaimHeadsOnly", fn: testClaimHeads[TTx]},
		{name: "ClaimHidesHeldEventsAndSuccessors", concurrent: true, fn: testClaimHidesHeld[TTx]},
		{name: "ReleaseReturnsEventsUntouched", fn: testRelease[TTx]},
		{name: "FinishPublishedDeletes", fn: testFinishPublished[TTx]},
		{name: "FinishRejectsWrongOutcomeCount", fn: testFinishWrongCount[TTx]},
		{name: "RetrySchedulesAgain", fn: testRetry[TTx]},
		{name: "FinishStoresAnyErrorText", fn: testErrorText[TTx]},
		{name: "DeadLetterMovesAtomicallyAndParks", fn: testDeadLetter[TTx]},
		{name: "MoveOnPastDeadLetters", fn: testMoveOn[TTx]},
		{name: "ReplayExactlyOnce", fn: testReplay[TTx]},
		{name: "DiscardReleasesParkedEvents", fn: testDiscard[TTx]},
		{name: "ReplayAfterIdempotencyKeyWasTaken", fn: testReplayKeyTaken[TTx]},
		{name: "CallerNumberedSequences", fn: testCallerNumbered[TTx]},
		{name: "ReplayDeadLettersByFilter", fn: testReplayByFilter[TTx]},
		{name: "ListDeadLettersFiltersAndCursor", fn: testListDeadLetters[TTx]},
		{name: "ListDeadLettersByErrorText", fn: testErrorContains[TTx]},
		{name: "PendingEventsOfAnAggregate", fn: testPendingEvents[TTx]},
		{name: "InvalidFiltersRefusedBeforeTheDatabase", fn: testInvalidFilters[TTx]},
		{name: "PruneDeadLetters", fn: testPrune[TTx]},
		{name: "Stats", fn: testStats[TTx]},
		{name: "ConcurrentClaimsPublishEachEventOnceInOrder", fn: testConcurrentClaims[TTx]},
		{name: "ListenWakesAfterCommit", fn: testListen[TTx]},
		{name: "LateCommitIsStillClaimed", concurrent: true, fn: testLateCommit[TTx]},
		{name: "WritersOfOneAggregateCommitInSequenceOrder", concurrent: true, fn: testWriterOrder[TTx]},
		{name: "RunsFollowTheirHead", fn: func(t *testing.T, s *suite[TTx]) { testRuns(t, s, h.Runs) }},
		{name: "RunsStopAtParkedOrNotDue", fn: func(t *testing.T, s *suite[TTx]) { testRunsStop(t, s, h.Runs) }},
		{name: "RunsOfHeldAggregatesHidden", concurrent: true, fn: func(t *testing.T, s *suite[TTx]) { testRunsHeld(t, s, h.Runs) }},
		{name: "NamedOutboxesSideBySide", fn: func(t *testing.T, s *suite[TTx]) { testNamedOutboxes(t, s, h.Named) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.concurrent && !h.ConcurrentWriters {
				t.Skip("the driver allows one writer at a time")
			}
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
			defer cancel()
			d := h.New(t)
			if d == nil {
				t.Fatal("storetest: Harness.New returned nil")
			}
			s := &suite[TTx]{d: d, c: outbox.NewClient(d), ctx: ctx}
			// A failed test must not leave batches open: the driver's own
			// cleanup (a pool closing) could wait for them forever.
			t.Cleanup(s.releaseOpen)
			tc.fn(t, s)
		})
	}
}

// suite is one subtest's driver and helpers.
type suite[TTx any] struct {
	d   outbox.Driver[TTx]
	c   *outbox.Client[TTx]
	ctx context.Context
	n   atomic.Int64 // events made so far, to vary payloads

	mu   sync.Mutex
	open map[*trackedBatch]bool // batches the suite claimed and has not ended
}

// trackedBatch is a Batch the suite ends at cleanup if the test did not.
type trackedBatch struct {
	outbox.Batch
	forget func()
}

func (b *trackedBatch) Finish(ctx context.Context, outcomes []outbox.Outcome) error {
	b.forget()
	return b.Batch.Finish(ctx, outcomes)
}

func (b *trackedBatch) Release(ctx context.Context) error {
	b.forget()
	return b.Batch.Release(ctx)
}

func (s *suite[TTx]) track(b outbox.Batch) outbox.Batch {
	tb := &trackedBatch{Batch: b}
	var once sync.Once
	tb.forget = func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.open, tb)
			s.mu.Unlock()
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open == nil {
		s.open = map[*trackedBatch]bool{}
	}
	s.open[tb] = true
	return tb
}

func (s *suite[TTx]) releaseOpen() {
	s.mu.Lock()
	open := make([]*trackedBatch, 0, len(s.open))
	for b := range s.open {
		open = append(open, b)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range open {
		_ = b.Release(ctx)
	}
}

// event makes a valid event of aggregate "aggType/aggID".
func (s *suite[TTx]) event(aggType, aggID, typ string) outbox.Event {
	n := s.n.Add(1)
	return outbox.Event{
		AggregateType: aggType,
		AggregateID:   aggID,
		Type:          typ,
		Payload:       json.RawMessage(fmt.Sprintf(`{"n": %d, "agg": %q, "nested": {"b": [1, 2.5, "x"], "a": null}}`, n, aggID)),
		Headers:       map[string]string{"traceparent": fmt.Sprintf("00-%032x-%016x-01", n, n)},
	}
}

// ev makes an event of aggregate type "order".
func (s *suite[TTx]) ev(aggID string) outbox.Event { return s.event("order", aggID, "order.updated") }

func (s *suite[TTx]) enqueue(t *testing.T, events ...outbox.Event) []outbox.Enqueued {
	t.Helper()
	out, err := s.c.Enqueue(s.ctx, events...)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if len(out) != len(events) {
		t.Fatalf("Enqueue returned %d results for %d events", len(out), len(events))
	}
	return out
}

func (s *suite[TTx]) claim(t *testing.T, limit int) outbox.Batch {
	t.Helper()
	return s.claimP(t, outbox.ClaimParams{Limit: limit})
}

func (s *suite[TTx]) claimP(t *testing.T, p outbox.ClaimParams) outbox.Batch {
	t.Helper()
	b, err := s.d.Claim(s.ctx, p)
	if err != nil {
		t.Fatalf("Claim(%+v): %v", p, err)
	}
	if b == nil {
		t.Fatal("Claim returned a nil batch")
	}
	return s.track(b)
}

func (s *suite[TTx]) finish(t *testing.T, b outbox.Batch, outcomes ...outbox.Outcome) {
	t.Helper()
	if err := b.Finish(s.ctx, outcomes); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

// finishAll finishes every record of b with outcome o.
func (s *suite[TTx]) finishAll(t *testing.T, b outbox.Batch, o outbox.Outcome) {
	t.Helper()
	outcomes := make([]outbox.Outcome, len(b.Records()))
	for i := range outcomes {
		outcomes[i] = o
	}
	s.finish(t, b, outcomes...)
}

func (s *suite[TTx]) release(t *testing.T, b outbox.Batch) {
	t.Helper()
	if err := b.Release(s.ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// claimKeys claims up to limit events, checks their keys against want (in
// any order), and returns the batch, still open.
func (s *suite[TTx]) claimExpect(t *testing.T, p outbox.ClaimParams, want ...string) outbox.Batch {
	t.Helper()
	b := s.claimP(t, p)
	if got := keys(b.Records()); !sameSet(got, want) {
		_ = b.Release(s.ctx)
		t.Fatalf("Claim(%+v) = %v, want %v", p, got, want)
	}
	return b
}

// publishNext claims with limit 1000, expects exactly want and publishes them.
func (s *suite[TTx]) publishNext(t *testing.T, want ...string) []outbox.Record {
	t.Helper()
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 1000}, want...)
	recs := slices.Clone(b.Records())
	s.finishAll(t, b, published)
	return recs
}

// expectNothing asserts that nothing is claimable.
func (s *suite[TTx]) expectNothing(t *testing.T, p outbox.ClaimParams) {
	t.Helper()
	b := s.claimExpect(t, p)
	s.release(t, b)
}

// claimUntil claims until a batch holds want (polling: for retry delays),
// and returns that batch, open. Other events claimed meanwhile are released.
func (s *suite[TTx]) claimUntil(t *testing.T, want string, within time.Duration) (outbox.Batch, outbox.Record) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b := s.claim(t, 1000)
		for _, r := range b.Records() {
			if key(r) == want {
				if len(b.Records()) != 1 {
					_ = b.Release(s.ctx)
					t.Fatalf("Claim = %v, want only %s", keys(b.Records()), want)
				}
				return b, r
			}
		}
		got := keys(b.Records())
		s.release(t, b)
		if time.Now().After(deadline) {
			t.Fatalf("%s was not claimed within %v (last claim: %v)", want, within, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *suite[TTx]) stats(t *testing.T) outbox.Stats {
	t.Helper()
	st, err := s.d.Stats(s.ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

// expectCounts checks the pending and open dead-letter counts.
func (s *suite[TTx]) expectCounts(t *testing.T, pending, retrying, deadLetters int64) {
	t.Helper()
	st := s.stats(t)
	if st.Pending != pending || st.Retrying != retrying || st.DeadLetters != deadLetters {
		t.Fatalf("Stats = pending %d, retrying %d, dead letters %d; want %d, %d, %d",
			st.Pending, st.Retrying, st.DeadLetters, pending, retrying, deadLetters)
	}
}

func (s *suite[TTx]) list(t *testing.T, f outbox.DeadLetterFilter) []outbox.DeadLetter {
	t.Helper()
	dls, err := s.d.ListDeadLetters(s.ctx, f)
	if err != nil {
		t.Fatalf("ListDeadLetters(%+v): %v", f, err)
	}
	return dls
}

func (s *suite[TTx]) get(t *testing.T, id int64) outbox.DeadLetter {
	t.Helper()
	dl, err := s.d.GetDeadLetter(s.ctx, id)
	if err != nil {
		t.Fatalf("GetDeadLetter(%d): %v", id, err)
	}
	if dl.ID != id {
		t.Fatalf("GetDeadLetter(%d) returned id %d", id, dl.ID)
	}
	return dl
}

// deadLetter claims exactly the heads want, dead-letters them with error msg
// and returns their dead letters by key.
func (s *suite[TTx]) deadLetter(t *testing.T, msg string, want ...string) map[string]outbox.DeadLetter {
	t.Helper()
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 1000}, want...)
	recs := slices.Clone(b.Records())
	s.finishAll(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: msg})
	out := map[string]outbox.DeadLetter{}
	for _, dl := range s.list(t, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen, Limit: 1000}) {
		for _, r := range recs {
			if dl.EventID == r.ID {
				out[key(r)] = dl
			}
		}
	}
	if len(out) != len(want) {
		t.Fatalf("dead-lettered %v, found open dead letters for %d of them", want, len(out))
	}
	return out
}

var published = outbox.Outcome{Kind: outbox.OutcomePublished}

func key(r outbox.Record) string {
	return fmt.Sprintf("%s/%s#%d", r.AggregateType, r.AggregateID, r.Sequence)
}

func keys(rs []outbox.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = key(r)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// jsonEqual compares JSON documents by value: drivers may normalise them.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("stored payload %q is not JSON: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("payload %q is not JSON: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func headersEqual(a, b map[string]string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// checkRecord compares what was enqueued with what was claimed.
func checkRecord(t *testing.T, r outbox.Record, e outbox.Event, enq outbox.Enqueued) {
	t.Helper()
	switch {
	case r.ID != enq.ID:
		t.Errorf("%s: ID = %s, want %s", key(r), r.ID, enq.ID)
	case r.Sequence != enq.Sequence:
		t.Errorf("%s: Sequence = %d, want %d", key(r), r.Sequence, enq.Sequence)
	case r.AggregateType != e.AggregateType || r.AggregateID != e.AggregateID || r.Type != e.Type:
		t.Errorf("%s: aggregate/type = %s/%s %s, want %s/%s %s", key(r), r.AggregateType, r.AggregateID, r.Type,
			e.AggregateType, e.AggregateID, e.Type)
	case !jsonEqual(t, r.Payload, e.Payload):
		t.Errorf("%s: Payload = %s, want %s", key(r), r.Payload, e.Payload)
	case !headersEqual(r.Headers, e.Headers):
		t.Errorf("%s: Headers = %v, want %v", key(r), r.Headers, e.Headers)
	case r.IdempotencyKey != e.IdempotencyKey:
		t.Errorf("%s: IdempotencyKey = %q, want %q", key(r), r.IdempotencyKey, e.IdempotencyKey)
	case r.CreatedAt.IsZero():
		t.Errorf("%s: CreatedAt is zero", key(r))
	}
}

// near reports whether a database time is within a minute of the local
// clock's: the database may run on another machine.
func near(ts, local time.Time) bool {
	d := ts.Sub(local)
	return d > -time.Minute && d < time.Minute
}

func testSequences[TTx any](t *testing.T, s *suite[TTx]) {
	before := time.Now()
	a := []outbox.Event{s.ev("A"), s.ev("A"), s.ev("A")}
	a[1].IdempotencyKey = "key-a2"
	a[2].Headers = nil
	id := uuid.Must(uuid.NewRandom())
	a[0].ID = id
	enqA := s.enqueue(t, a...)
	for i, want := range []int64{1, 2, 3} {
		if enqA[i].Sequence != want {
			t.Fatalf("first batch of A: sequences %v, want 1, 2, 3", enqA)
		}
		if enqA[i].ID == uuid.Nil {
			t.Fatalf("event %d got no id", i)
		}
	}
	if enqA[0].ID != id {
		t.Fatalf("given id not kept: got %s, want %s", enqA[0].ID, id)
	}
	if enqA[1].ID == enqA[2].ID {
		t.Fatal("two events got the same id")
	}
	// Interleaved aggregates in one call: each counts on its own, in call order.
	mixed := []outbox.Event{s.ev("A"), s.event("customer", "A", "customer.created"), s.ev("B"), s.ev("A"), s.ev("B")}
	enqM := s.enqueue(t, mixed...)
	if got, want := seqs(enqM), []int64{4, 1, 1, 5, 2}; !slices.Equal(got, want) {
		t.Fatalf("mixed call: sequences %v, want %v (order/A, customer/A, order/B, order/A, order/B)", got, want)
	}

	all := append(slices.Clone(a), mixed...)
	allEnq := append(slices.Clone(enqA), enqM...)
	byID := map[uuid.UUID]int{}
	for i, e := range allEnq {
		byID[e.ID] = i
	}
	// Publish everything, head by head, and check each record.
	perAgg := map[string][]int64{}
	for range 10 {
		b := s.claim(t, 1000)
		if len(b.Records()) == 0 {
			s.release(t, b)
			break
		}
		for _, r := range b.Records() {
			i, ok := byID[r.ID]
			if !ok {
				t.Fatalf("claimed unknown event %s", r.ID)
			}
			checkRecord(t, r, all[i], allEnq[i])
			if r.Attempts != 0 || r.LastError != "" || !r.FirstFailedAt.IsZero() {
				t.Errorf("%s: fresh event has attempts %d, last error %q, first failed %v", key(r), r.Attempts, r.LastError, r.FirstFailedAt)
			}
			if !near(r.CreatedAt, before) {
				t.Errorf("%s: CreatedAt %v is not near now (%v)", key(r), r.CreatedAt, before)
			}
			agg := r.AggregateType + "/" + r.AggregateID
			perAgg[agg] = append(perAgg[agg], r.Sequence)
		}
		s.finishAll(t, b, published)
	}
	want := map[string][]int64{"order/A": {1, 2, 3, 4, 5}, "customer/A": {1}, "order/B": {1, 2}}
	if !reflect.DeepEqual(perAgg, want) {
		t.Fatalf("published sequences per aggregate, in claim order: %v, want %v", perAgg, want)
	}
	s.expectCounts(t, 0, 0, 0)
}

func seqs(enq []outbox.Enqueued) []int64 {
	out := make([]int64, len(enq))
	for i, e := range enq {
		out[i] = e.Sequence
	}
	return out
}

func testConcurrentEnqueue[TTx any](t *testing.T, s *suite[TTx]) {
	const writers, each = 8, 5
	var (
		mu   sync.Mutex
		got  = map[string][]int64{}
		wg   sync.WaitGroup
		errs = make(chan error, writers)
	)
	events := make([][]outbox.Event, writers)
	for w := range writers {
		for range each {
			events[w] = append(events[w], s.ev("A"), s.ev("B"))
		}
	}
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < len(events[w]); i += 2 {
				enq, err := s.c.Enqueue(s.ctx, events[w][i], events[w][i+1])
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got["A"] = append(got["A"], enq[0].Sequence)
				got["B"] = append(got["B"], enq[1].Sequence)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Enqueue: %v", err)
	}
	for _, agg := range []string{"A", "B"} {
		s := got[agg]
		slices.Sort(s)
		for i, seq := range s {
			if seq != int64(i+1) {
				t.Fatalf("aggregate %s: sequences %v, want 1..%d each once", agg, s, writers*each)
			}
		}
		if len(s) != writers*each {
			t.Fatalf("aggregate %s: %d sequences, want %d", agg, len(s), writers*each)
		}
	}
	s.expectCounts(t, 2*writers*each, 0, 0)
}

var errRollback = errors.New("storetest: roll back")

func testRollbackNoGap[TTx any](t *testing.T, s *suite[TTx]) {
	first := s.enqueue(t, s.ev("A"))
	var rolledBack []outbox.Enqueued
	err := s.d.WithTx(s.ctx, func(tx TTx) error {
		var err error
		rolledBack, err = s.c.EnqueueTx(s.ctx, tx, s.ev("A"), s.ev("A"), s.ev("B"))
		if err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("WithTx returned %v, want fn's error", err)
	}
	if got := seqs(rolledBack); !slices.Equal(got, []int64{2, 3, 1}) {
		t.Fatalf("sequences inside the rolled-back transaction: %v, want [2 3 1]", got)
	}
	s.expectCounts(t, 1, 0, 0)
	second := s.enqueue(t, s.ev("A"), s.ev("B"))
	if got := seqs(second); !slices.Equal(got, []int64{2, 1}) {
		t.Fatalf("after a rollback: sequences %v, want [2 1] (no gap)", got)
	}
	recs := s.publishNext(t, "order/A#1", "order/B#1")
	for _, r := range recs {
		if r.ID != first[0].ID && r.ID != second[1].ID {
			t.Fatalf("claimed %s with id %s, which is not a committed event", key(r), r.ID)
		}
	}
	recs = s.publishNext(t, "order/A#2")
	if recs[0].ID != second[0].ID {
		t.Fatalf("order/A#2 has id %s, want %s", recs[0].ID, second[0].ID)
	}
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
}

func testDuplicates[TTx any](t *testing.T, s *suite[TTx]) {
	e := s.ev("A")
	e.IdempotencyKey = "k1"
	first := s.enqueue(t, e)

	dupID := s.ev("B")
	dupID.ID = first[0].ID
	if _, err := s.c.Enqueue(s.ctx, dupID); !errors.Is(err, outbox.ErrDuplicate) {
		t.Fatalf("Enqueue with a taken id: %v, want ErrDuplicate", err)
	}
	dupKey := s.ev("C")
	dupKey.IdempotencyKey = "k1"
	if _, err := s.c.Enqueue(s.ctx, dupKey); !errors.Is(err, outbox.ErrDuplicate) {
		t.Fatalf("Enqueue with a taken idempotency key: %v, want ErrDuplicate", err)
	}
	// A duplicate later in a call undoes the whole call.
	fresh := s.ev("D")
	fresh.IdempotencyKey = "k2"
	if _, err := s.c.Enqueue(s.ctx, fresh, s.ev("A"), dupKey); !errors.Is(err, outbox.ErrDuplicate) {
		t.Fatalf("Enqueue of a call with a duplicate: %v, want ErrDuplicate", err)
	}
	// Duplicates within one call.
	twin := s.ev("E")
	twin.IdempotencyKey = "k3"
	if _, err := s.c.Enqueue(s.ctx, twin, twin); !errors.Is(err, outbox.ErrDuplicate) {
		t.Fatalf("Enqueue of one event twice: %v, want ErrDuplicate", err)
	}
	// Inside the caller's transaction, the error reaches the caller, who rolls back.
	err := s.d.WithTx(s.ctx, func(tx TTx) error {
		_, err := s.c.EnqueueTx(s.ctx, tx, s.ev("F"), dupID)
		return err
	})
	if !errors.Is(err, outbox.ErrDuplicate) {
		t.Fatalf("EnqueueTx with a taken id: %v, want ErrDuplicate", err)
	}
	s.expectCounts(t, 1, 0, 0)

	// Nothing of the failed calls was written, counters included.
	enq := s.enqueue(t, fresh, s.ev("A"), s.ev("F"))
	if got := seqs(enq); !slices.Equal(got, []int64{1, 2, 1}) {
		t.Fatalf("after refused duplicates: sequences %v, want [1 2 1]", got)
	}
	s.publishNext(t, "order/A#1", "order/D#1", "order/F#1")
	s.publishNext(t, "order/A#2")
	s.expectCounts(t, 0, 0, 0)
}

func testInvalidEvents[TTx any](t *testing.T, s *suite[TTx]) {
	long := strings.Repeat("x", outbox.MaxNameLen+1)
	cases := map[string]func(e *outbox.Event){
		"no aggregate type":        func(e *outbox.Event) { e.AggregateType = "" },
		"no aggregate id":          func(e *outbox.Event) { e.AggregateID = "" },
		"no event type":            func(e *outbox.Event) { e.Type = "" },
		"no payload":               func(e *outbox.Event) { e.Payload = nil },
		"payload not JSON":         func(e *outbox.Event) { e.Payload = json.RawMessage(`{"a":`) },
		"aggregate id too long":    func(e *outbox.Event) { e.AggregateID = long },
		"idempotency key too long": func(e *outbox.Event) { e.IdempotencyKey = long },
		"payload too large": func(e *outbox.Event) {
			e.Payload = json.RawMessage(`"` + strings.Repeat("p", outbox.MaxPayloadLen) + `"`)
		},
	}
	for name, mutate := range cases {
		bad := s.ev("A")
		mutate(&bad)
		if _, err := s.c.Enqueue(s.ctx, s.ev("A"), bad); !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Errorf("%s: Enqueue = %v, want ErrInvalidEvent", name, err)
		}
		err := s.d.WithTx(s.ctx, func(tx TTx) error {
			_, err := s.c.EnqueueTx(s.ctx, tx, bad)
			return err
		})
		if !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Errorf("%s: EnqueueTx = %v, want ErrInvalidEvent", name, err)
		}
	}
	s.expectCounts(t, 0, 0, 0)
	if enq := s.enqueue(t, s.ev("A")); enq[0].Sequence != 1 {
		t.Fatalf("first valid event after refusals: sequence %d, want 1", enq[0].Sequence)
	}
}

func testClaimHeads[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("A"))
	s.enqueue(t, s.ev("B"), s.ev("B"))
	s.enqueue(t, s.ev("C"))
	s.publishNext(t, "order/A#1", "order/B#1", "order/C#1")
	s.publishNext(t, "order/A#2", "order/B#2")
	s.publishNext(t, "order/A#3")
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})

	// The limit caps a batch; the events left are the next heads.
	for _, id := range []string{"P", "Q", "R", "S", "T"} {
		s.enqueue(t, s.ev(id), s.ev(id))
	}
	b := s.claim(t, 2)
	if n := len(b.Records()); n != 2 {
		t.Fatalf("Claim(limit 2) took %d events", n)
	}
	for _, r := range b.Records() {
		if r.Sequence != 1 {
			t.Fatalf("Claim(limit 2) took %s, not a head", key(r))
		}
	}
	s.finishAll(t, b, published)
	b = s.claim(t, 10)
	if got := keys(b.Records()); len(got) != 5 {
		t.Fatalf("after publishing 2 heads: claimed %v, want 3 heads #1 and 2 heads #2", got)
	}
	ones := 0
	for _, r := range b.Records() {
		if r.Sequence == 1 {
			ones++
		}
	}
	if ones != 3 {
		t.Fatalf("after publishing 2 heads: claimed %v, want 3 heads #1 and 2 heads #2", keys(b.Records()))
	}
	s.release(t, b)
}

func testClaimHidesHeld[TTx any](t *testing.T, s *suite[TTx]) {
	for _, id := range []string{"A", "B", "C", "D", "E"} {
		s.enqueue(t, s.ev(id), s.ev(id))
	}
	b1 := s.claim(t, 2)
	b2 := s.claim(t, 2)
	held := append(keys(b1.Records()), keys(b2.Records())...)
	if len(held) != 4 {
		t.Fatalf("two claims of 2 took %v", held)
	}
	// While b1 and b2 are open: the fifth head only, not the held events
	// nor their successors.
	b3 := s.claim(t, 10)
	got := keys(b3.Records())
	if len(got) != 1 || slices.Contains(held, got[0]) || !strings.HasSuffix(got[0], "#1") {
		t.Fatalf("third claim while two batches are open: %v (held: %v), want the one other head", got, held)
	}
	all := append(held, got...)
	if !sameSet(all, []string{"order/A#1", "order/B#1", "order/C#1", "order/D#1", "order/E#1"}) {
		t.Fatalf("three claims took %v, want each head once", all)
	}
	// Enqueueing while batches are open works and the new head is claimable.
	s.enqueue(t, s.ev("F"))
	b4 := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/F#1")
	s.finishAll(t, b4, published)

	// Finish b1: its successors become heads; b2's stay hidden.
	s.finishAll(t, b1, published)
	var want []string
	for _, r := range b1.Records() {
		want = append(want, fmt.Sprintf("order/%s#2", r.AggregateID))
	}
	b5 := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, want...)
	s.release(t, b5)
	s.release(t, b3)
	s.release(t, b2)
	// Everything not published is back: b2's and b3's heads, b1's successors.
	b6 := s.claim(t, 10)
	if n := len(b6.Records()); n != 5 {
		t.Fatalf("after releasing: claimed %v, want 5 events", keys(b6.Records()))
	}
	s.release(t, b6)
}

func testRelease[TTx any](t *testing.T, s *suite[TTx]) {
	e := s.ev("A")
	e.IdempotencyKey = "release-key"
	enq := s.enqueue(t, e, s.ev("A"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1")
	before := b.Records()[0]
	s.release(t, b)
	s.expectCounts(t, 2, 0, 0)
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1")
	after := b.Records()[0]
	checkRecord(t, after, e, enq[0])
	if after.Attempts != 0 || after.LastError != "" || !after.FirstFailedAt.IsZero() || !after.CreatedAt.Equal(before.CreatedAt) {
		t.Fatalf("released event changed: before %+v, after %+v", before, after)
	}
	s.release(t, b)
}

func testFinishPublished[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("B"), s.ev("C"))
	s.expectCounts(t, 3, 0, 0)
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1", "order/C#1")
	outcomes := make([]outbox.Outcome, 3)
	for i, r := range b.Records() {
		outcomes[i] = published
		if r.AggregateID == "B" {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "later", Delay: time.Hour}
		}
	}
	s.finish(t, b, outcomes...)
	s.expectCounts(t, 1, 1, 0)
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
	if dls := s.list(t, outbox.DeadLetterFilter{}); len(dls) != 0 {
		t.Fatalf("published events left %d dead letters", len(dls))
	}
}

func testFinishWrongCount[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("B"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1")
	if err := b.Finish(s.ctx, []outbox.Outcome{published}); err == nil {
		t.Fatal("Finish with 1 outcome for 2 records succeeded")
	}
	_ = b.Release(s.ctx) // the relay releases after a failed Finish
	s.expectCounts(t, 2, 0, 0)
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1")
	for _, r := range b.Records() {
		if r.Attempts != 0 {
			t.Fatalf("%s: attempts %d after a failed Finish, want 0", key(r), r.Attempts)
		}
	}
	s.release(t, b)
}

func testRetry[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("B"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1")
	outcomes := make([]outbox.Outcome, 2)
	for i, r := range b.Records() {
		outcomes[i] = published
		if r.AggregateID == "A" {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "broker down", Delay: time.Hour}
		}
	}
	s.finish(t, b, outcomes...)
	s.expectCounts(t, 2, 1, 0)
	// A#1 is not due for an hour, and A#2 waits behind it.
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
	s.expectNothing(t, outbox.ClaimParams{Limit: 10, MoveOnPastDeadLetters: true})

	// A short delay: claimed again, with its bookkeeping.
	c := s.enqueue(t, s.ev("C"))
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/C#1")
	s.finish(t, b, outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "first failure", Delay: time.Millisecond})
	b, r := s.claimUntil(t, "order/C#1", 10*time.Second)
	if r.ID != c[0].ID || r.Attempts != 1 || r.LastError != "first failure" || r.FirstFailedAt.IsZero() {
		t.Fatalf("retried event: id %s attempts %d last error %q first failed %v; want id %s, 1, %q, set",
			r.ID, r.Attempts, r.LastError, r.FirstFailedAt, c[0].ID, "first failure")
	}
	if !near(r.FirstFailedAt, time.Now()) {
		t.Fatalf("FirstFailedAt %v is not near now", r.FirstFailedAt)
	}
	firstFailed := r.FirstFailedAt
	s.finish(t, b, outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "second failure", Delay: time.Millisecond})
	b, r = s.claimUntil(t, "order/C#1", 10*time.Second)
	if r.Attempts != 2 || r.LastError != "second failure" || !r.FirstFailedAt.Equal(firstFailed) {
		t.Fatalf("retried twice: attempts %d last error %q first failed %v; want 2, %q, %v",
			r.Attempts, r.LastError, r.FirstFailedAt, "second failure", firstFailed)
	}
	if r.Sequence != 1 || r.ID != c[0].ID {
		t.Fatalf("retry changed identity: %s id %s", key(r), r.ID)
	}
	s.expectCounts(t, 3, 2, 0)
	s.finish(t, b, published)
	s.expectCounts(t, 2, 1, 0)
}

// testErrorText: a publisher's error may hold any bytes (a NUL, a message cut
// in the middle of a UTF-8 character); Finish must store it all the same, or
// the batch would fail to finish and be published again forever.
func testErrorText[TTx any](t *testing.T, s *suite[TTx]) {
	const msg = "broker said \x00 caf\xc3"
	s.enqueue(t, s.ev("A"), s.ev("B"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1")
	outcomes := make([]outbox.Outcome, 2)
	for i, r := range b.Records() {
		outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: msg}
		if r.AggregateID == "A" {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: msg, Delay: time.Millisecond}
		}
	}
	s.finish(t, b, outcomes...)
	s.expectCounts(t, 1, 1, 1)
	b, r := s.claimUntil(t, "order/A#1", 10*time.Second)
	if !strings.HasPrefix(r.LastError, "broker said") || r.Attempts != 1 {
		t.Fatalf("retried event: last error %q, attempts %d", r.LastError, r.Attempts)
	}
	s.release(t, b)
	if dls := s.list(t, outbox.DeadLetterFilter{}); len(dls) != 1 || !strings.HasPrefix(dls[0].Error, "broker said") {
		t.Fatalf("dead letters %+v, want one with the error", dls)
	}
}

func testDeadLetter[TTx any](t *testing.T, s *suite[TTx]) {
	a1 := s.ev("A")
	a1.IdempotencyKey = "dead-key"
	enq := s.enqueue(t, a1, s.ev("A"), s.ev("B"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1")
	outcomes := make([]outbox.Outcome, 2)
	for i, r := range b.Records() {
		outcomes[i] = published
		if r.AggregateID == "A" {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "try again", Delay: time.Millisecond}
		}
	}
	s.finish(t, b, outcomes...)
	b, r := s.claimUntil(t, "order/A#1", 10*time.Second)
	// While claimed, the event is still counted in the outbox and nowhere else.
	s.expectCounts(t, 2, 1, 0)
	s.finish(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "poison"})
	// Moved: out of the outbox, into the dead-letter queue, exactly once.
	s.expectCounts(t, 1, 0, 1)

	dls := s.list(t, outbox.DeadLetterFilter{})
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	switch {
	case dl.ID <= 0:
		t.Errorf("dead letter id %d", dl.ID)
	case dl.EventID != enq[0].ID || dl.Sequence != 1:
		t.Errorf("dead letter of event %s #%d, want %s #1", dl.EventID, dl.Sequence, enq[0].ID)
	case dl.AggregateType != "order" || dl.AggregateID != "A" || dl.EventType != a1.Type:
		t.Errorf("dead letter %s/%s %s", dl.AggregateType, dl.AggregateID, dl.EventType)
	case !jsonEqual(t, dl.Payload, a1.Payload) || !headersEqual(dl.Headers, a1.Headers):
		t.Errorf("dead letter payload %s headers %v, want %s %v", dl.Payload, dl.Headers, a1.Payload, a1.Headers)
	case dl.IdempotencyKey != "dead-key":
		t.Errorf("dead letter idempotency key %q", dl.IdempotencyKey)
	case dl.Error != "poison" || dl.Attempts != 2:
		t.Errorf("dead letter error %q attempts %d, want %q 2", dl.Error, dl.Attempts, "poison")
	case !dl.CreatedAt.Equal(r.CreatedAt) || !dl.FirstFailedAt.Equal(r.FirstFailedAt):
		t.Errorf("dead letter created %v first failed %v, want %v %v", dl.CreatedAt, dl.FirstFailedAt, r.CreatedAt, r.FirstFailedAt)
	case dl.MovedAt.Before(dl.FirstFailedAt) || !near(dl.MovedAt, time.Now()):
		t.Errorf("dead letter moved at %v, first failed %v", dl.MovedAt, dl.FirstFailedAt)
	case dl.State() != outbox.DeadLetterOpen || dl.Reprocessed || dl.ReprocessedAt != nil || dl.DiscardedAt != nil || dl.DiscardReason != "":
		t.Errorf("new dead letter is not open: %+v", dl)
	}
	if got := s.get(t, dl.ID); !reflect.DeepEqual(got, dl) {
		t.Errorf("GetDeadLetter = %+v, ListDeadLetters = %+v", got, dl)
	}
	if _, err := s.d.GetDeadLetter(s.ctx, dl.ID+1000); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("GetDeadLetter(unknown) = %v, want ErrNotFound", err)
	}

	// A#2 is parked; other aggregates flow.
	s.enqueue(t, s.ev("B"), s.ev("C"))
	s.publishNext(t, "order/B#2", "order/C#1")
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
	s.enqueue(t, s.ev("A"))
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
	s.expectCounts(t, 2, 0, 1)

	// A permanent failure on the first attempt: one attempt, failed now.
	s.enqueue(t, s.ev("D"))
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/D#1")
	s.finish(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "permanent"})
	dd := s.list(t, outbox.DeadLetterFilter{AggregateID: "D"})
	if len(dd) != 1 || dd[0].Attempts != 1 || dd[0].FirstFailedAt.IsZero() || dd[0].Error != "permanent" {
		t.Fatalf("dead letter after one attempt: %+v, want attempts 1, first failed set", dd)
	}
}

func testMoveOn[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("A"), s.ev("B"))
	s.deadLetter(t, "poison", "order/A#1", "order/B#1")
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
	moveOn := outbox.ClaimParams{Limit: 10, MoveOnPastDeadLetters: true}
	b := s.claimExpect(t, moveOn, "order/A#2")
	s.finishAll(t, b, published)
	b = s.claimExpect(t, moveOn, "order/A#3")
	s.finishAll(t, b, published)
	s.expectNothing(t, moveOn)
	s.expectCounts(t, 0, 0, 2)

	// Moving on, a later event fails too: C#1 and C#2 are dead letters and
	// C#3 is pending.
	s.enqueue(t, s.ev("C"), s.ev("C"), s.ev("C"))
	c1 := s.deadLetter(t, "poison", "order/C#1")["order/C#1"]
	b = s.claimExpect(t, moveOn, "order/C#2")
	s.finishAll(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "poison"})
	// Parking again: C#1, replayed, is parked only by earlier dead letters,
	// not by C#2's; C#3 waits behind C#2's.
	if err := s.d.ReplayDeadLetter(s.ctx, c1.ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	s.publishNext(t, "order/C#1")
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
	c2 := s.list(t, outbox.DeadLetterFilter{AggregateID: "C", State: outbox.DeadLetterOpen})
	if len(c2) != 1 || c2[0].Sequence != 2 {
		t.Fatalf("open dead letters of C: %+v, want C#2's", c2)
	}
	if err := s.d.ReplayDeadLetter(s.ctx, c2[0].ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	s.publishNext(t, "order/C#2")
	s.publishNext(t, "order/C#3")
	s.expectCounts(t, 0, 0, 2)
}

func testReplay[TTx any](t *testing.T, s *suite[TTx]) {
	enq := s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("A"), s.ev("B"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1")
	var orig outbox.Record
	outcomes := make([]outbox.Outcome, 2)
	for i, r := range b.Records() {
		outcomes[i] = published
		if r.AggregateID == "A" {
			orig = r
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "poison"}
		}
	}
	s.finish(t, b, outcomes...)
	dls := s.list(t, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})
	if len(dls) != 1 {
		t.Fatalf("%d open dead letters, want 1", len(dls))
	}
	id := dls[0].ID

	// Two operators replay at once: exactly one wins.
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [2]error
	)
	for i := range errs {
		wg.Go(func() {
			<-start
			errs[i] = s.d.ReplayDeadLetter(s.ctx, id)
		})
	}
	close(start)
	wg.Wait()
	ok, resolved := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, outbox.ErrAlreadyResolved):
			resolved++
		default:
			t.Fatalf("concurrent replay: %v", err)
		}
	}
	if ok != 1 || resolved != 1 {
		t.Fatalf("concurrent replays: %d succeeded, %d already resolved; want 1 and 1 (%v)", ok, resolved, errs)
	}
	dl := s.get(t, id)
	if dl.State() != outbox.DeadLetterReplayed || !dl.Reprocessed || dl.ReprocessedAt == nil || dl.DiscardedAt != nil {
		t.Fatalf("replayed dead letter: %+v", dl)
	}
	s.expectCounts(t, 3, 0, 0)

	// The replayed event comes first, as it was, then the parked ones in order.
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1")
	r := b.Records()[0]
	if r.ID != enq[0].ID || r.Attempts != 0 || r.LastError != "" || !r.CreatedAt.Equal(orig.CreatedAt) ||
		!jsonEqual(t, r.Payload, orig.Payload) || !headersEqual(r.Headers, orig.Headers) || r.Type != orig.Type {
		t.Fatalf("replayed event %+v, want %+v with attempts 0", r, orig)
	}
	// It can fail again: a second dead letter of the same event.
	s.finish(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "poison again"})
	again := s.list(t, outbox.DeadLetterFilter{AggregateID: "A"})
	if len(again) != 2 || again[0].ID != id || again[1].ID <= id || again[1].EventID != enq[0].ID ||
		again[0].State() != outbox.DeadLetterReplayed || again[1].State() != outbox.DeadLetterOpen {
		t.Fatalf("after a second failure: %+v", again)
	}
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})
	if err := s.d.ReplayDeadLetter(s.ctx, again[1].ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	s.publishNext(t, "order/A#1")
	s.publishNext(t, "order/A#2")
	s.publishNext(t, "order/A#3")
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})

	if err := s.d.ReplayDeadLetter(s.ctx, id); !errors.Is(err, outbox.ErrAlreadyResolved) {
		t.Errorf("replaying a replayed dead letter: %v, want ErrAlreadyResolved", err)
	}
	if err := s.d.DiscardDeadLetter(s.ctx, id, "late"); !errors.Is(err, outbox.ErrAlreadyResolved) {
		t.Errorf("discarding a replayed dead letter: %v, want ErrAlreadyResolved", err)
	}
	var re *outbox.ResolvedError
	if err := s.d.DiscardDeadLetter(s.ctx, id, "late"); !errors.As(err, &re) || re.ID != id ||
		re.State != outbox.DeadLetterReplayed || !re.At.Equal(*dl.ReprocessedAt) || !strings.Contains(err.Error(), "already replayed at") {
		t.Errorf("discarding a replayed dead letter: %v (%+v), want a ResolvedError: replayed at %v", err, re, dl.ReprocessedAt)
	}
	if err := s.d.ReplayDeadLetter(s.ctx, again[1].ID+1000); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("replaying an unknown dead letter: %v, want ErrNotFound", err)
	}
	if err := s.d.DiscardDeadLetter(s.ctx, again[1].ID+1000, "x"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("discarding an unknown dead letter: %v, want ErrNotFound", err)
	}
	s.expectCounts(t, 0, 0, 0)
}

func testDiscard[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("B"), s.ev("B"))
	dls := s.deadLetter(t, "poison", "order/A#1", "order/B#1")
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})

	id := dls["order/A#1"].ID
	if err := s.d.DiscardDeadLetter(s.ctx, id, "obsolete order"); err != nil {
		t.Fatalf("DiscardDeadLetter: %v", err)
	}
	dl := s.get(t, id)
	if dl.State() != outbox.DeadLetterDiscarded || dl.DiscardedAt == nil || dl.DiscardReason != "obsolete order" ||
		dl.Reprocessed || dl.ReprocessedAt != nil || dl.Error != "poison" {
		t.Fatalf("discarded dead letter: %+v", dl)
	}
	s.expectCounts(t, 2, 0, 1)
	// A's parked event flows; B's stays parked.
	s.publishNext(t, "order/A#2")
	s.expectNothing(t, outbox.ClaimParams{Limit: 10})

	if err := s.d.DiscardDeadLetter(s.ctx, id, "again"); !errors.Is(err, outbox.ErrAlreadyResolved) {
		t.Errorf("discarding twice: %v, want ErrAlreadyResolved", err)
	}
	if err := s.d.ReplayDeadLetter(s.ctx, id); !errors.Is(err, outbox.ErrAlreadyResolved) {
		t.Errorf("replaying a discarded dead letter: %v, want ErrAlreadyResolved", err)
	}
	// The error says which: discarded, and when.
	var re *outbox.ResolvedError
	if err := s.d.ReplayDeadLetter(s.ctx, id); !errors.As(err, &re) || re.ID != id ||
		re.State != outbox.DeadLetterDiscarded || !re.At.Equal(*dl.DiscardedAt) || !strings.Contains(err.Error(), "already discarded at") {
		t.Errorf("replaying a discarded dead letter: %v (%+v), want a ResolvedError: discarded at %v", err, re, dl.DiscardedAt)
	}
	if got := s.get(t, id); got.DiscardReason != "obsolete order" {
		t.Errorf("second discard changed the reason to %q", got.DiscardReason)
	}

	// Discard and replay race on one dead letter: exactly one wins.
	bid := dls["order/B#1"].ID
	var (
		wg         sync.WaitGroup
		start      = make(chan struct{})
		discardErr error
		replayErr  error
	)
	wg.Go(func() { <-start; discardErr = s.d.DiscardDeadLetter(s.ctx, bid, "race") })
	wg.Go(func() { <-start; replayErr = s.d.ReplayDeadLetter(s.ctx, bid) })
	close(start)
	wg.Wait()
	switch {
	case discardErr == nil && errors.Is(replayErr, outbox.ErrAlreadyResolved):
		if dl := s.get(t, bid); dl.State() != outbox.DeadLetterDiscarded {
			t.Fatal("discard won but the dead letter is not discarded")
		}
		s.publishNext(t, "order/B#2")
	case replayErr == nil && errors.Is(discardErr, outbox.ErrAlreadyResolved):
		if dl := s.get(t, bid); dl.State() != outbox.DeadLetterReplayed {
			t.Fatal("replay won but the dead letter is not replayed")
		}
		s.publishNext(t, "order/B#1")
		s.publishNext(t, "order/B#2")
	default:
		t.Fatalf("discard and replay raced: discard %v, replay %v; want one nil, one ErrAlreadyResolved", discardErr, replayErr)
	}
	s.expectCounts(t, 0, 0, 0)
}

func testReplayByFilter[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t,
		s.event("order", "o1", "x"), s.event("order", "o1", "x"),
		s.event("order", "o2", "y"),
		s.event("customer", "c1", "x"),
		s.event("order", "o3", "x"))
	dls := s.deadLetter(t, "poison", "order/o1#1", "order/o2#1", "customer/c1#1", "order/o3#1")
	s.expectCounts(t, 1, 0, 4)

	n, err := s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{AggregateType: "order", EventType: "x"})
	if err != nil || n != 2 {
		t.Fatalf("ReplayDeadLetters(order, x) = %d, %v; want 2", n, err)
	}
	s.expectCounts(t, 3, 0, 2)
	for _, k := range []string{"order/o1#1", "order/o3#1"} {
		if dl := s.get(t, dls[k].ID); dl.State() != outbox.DeadLetterReplayed {
			t.Fatalf("%s: state %s after replay by filter", k, dl.State())
		}
	}
	s.publishNext(t, "order/o1#1", "order/o3#1")
	s.publishNext(t, "order/o1#2")

	n, err = s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{AggregateID: "c1"})
	if err != nil || n != 1 {
		t.Fatalf("ReplayDeadLetters(c1) = %d, %v; want 1", n, err)
	}
	s.publishNext(t, "customer/c1#1")

	// A discarded dead letter is not replayed by a filter that matches it.
	if err := s.d.DiscardDeadLetter(s.ctx, dls["order/o2#1"].ID, "skip"); err != nil {
		t.Fatal(err)
	}
	n, err = s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{})
	if err != nil || n != 0 {
		t.Fatalf("ReplayDeadLetters(all) with nothing open = %d, %v; want 0", n, err)
	}
	s.expectCounts(t, 0, 0, 0)

	// Limit takes the oldest dead letters first.
	s.enqueue(t, s.ev("L1"), s.ev("L2"), s.ev("L3"))
	s.deadLetter(t, "poison", "order/L1#1", "order/L2#1", "order/L3#1")
	open := s.list(t, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})
	if len(open) != 3 {
		t.Fatalf("%d open dead letters, want 3", len(open))
	}
	n, err = s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{Limit: 2})
	if err != nil || n != 2 {
		t.Fatalf("ReplayDeadLetters(limit 2) = %d, %v; want 2", n, err)
	}
	left := s.list(t, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})
	if len(left) != 1 || left[0].ID != open[2].ID {
		t.Fatalf("after replaying 2 of 3: open %+v, want the newest (id %d)", left, open[2].ID)
	}
	n, err = s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{AfterID: open[2].ID})
	if err != nil || n != 0 {
		t.Fatalf("ReplayDeadLetters(after the last id) = %d, %v; want 0", n, err)
	}
	n, err = s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{AfterID: open[1].ID})
	if err != nil || n != 1 {
		t.Fatalf("ReplayDeadLetters(after id %d) = %d, %v; want 1", open[1].ID, n, err)
	}
	s.expectCounts(t, 3, 0, 0)
}

func dlIDs(dls []outbox.DeadLetter) []int64 {
	out := make([]int64, len(dls))
	for i, d := range dls {
		out[i] = d.ID
	}
	return out
}

func testListDeadLetters[TTx any](t *testing.T, s *suite[TTx]) {
	if dls := s.list(t, outbox.DeadLetterFilter{}); len(dls) != 0 {
		t.Fatalf("empty queue lists %d dead letters", len(dls))
	}
	s.enqueue(t,
		s.event("order", "o1", "order.created"),
		s.event("order", "o2", "order.status_changed"),
		s.event("customer", "c1", "customer.created"),
		s.event("order", "o3", "order.created"),
		s.event("customer", "c2", "customer.created"))
	s.deadLetter(t, "poison", "order/o1#1", "order/o2#1", "customer/c1#1", "order/o3#1", "customer/c2#1")

	all := s.list(t, outbox.DeadLetterFilter{})
	if len(all) != 5 || !slices.IsSorted(dlIDs(all)) {
		t.Fatalf("ListDeadLetters() = ids %v, want 5 ascending", dlIDs(all))
	}
	byAgg := map[string]outbox.DeadLetter{}
	for _, dl := range all {
		byAgg[dl.AggregateID] = dl
	}
	if err := s.d.ReplayDeadLetter(s.ctx, byAgg["o2"].ID); err != nil {
		t.Fatal(err)
	}
	s.publishNext(t, "order/o2#1")
	if err := s.d.DiscardDeadLetter(s.ctx, byAgg["c1"].ID, "test"); err != nil {
		t.Fatal(err)
	}

	check := func(f outbox.DeadLetterFilter, aggIDs ...string) {
		t.Helper()
		got := s.list(t, f)
		var ids []string
		for _, dl := range got {
			ids = append(ids, dl.AggregateID)
		}
		if !slices.IsSorted(dlIDs(got)) || !slices.Equal(ids, filterOrder(all, aggIDs)) {
			t.Errorf("ListDeadLetters(%+v) = %v (ids %v), want %v by id", f, ids, dlIDs(got), aggIDs)
		}
	}
	check(outbox.DeadLetterFilter{State: outbox.DeadLetterOpen}, "o1", "o3", "c2")
	check(outbox.DeadLetterFilter{State: outbox.DeadLetterReplayed}, "o2")
	check(outbox.DeadLetterFilter{State: outbox.DeadLetterDiscarded}, "c1")
	check(outbox.DeadLetterFilter{AggregateType: "order"}, "o1", "o2", "o3")
	check(outbox.DeadLetterFilter{AggregateType: "customer", State: outbox.DeadLetterOpen}, "c2")
	check(outbox.DeadLetterFilter{AggregateID: "o3"}, "o3")
	check(outbox.DeadLetterFilter{AggregateType: "customer", AggregateID: "o3"})
	check(outbox.DeadLetterFilter{EventType: "order.created"}, "o1", "o3")
	check(outbox.DeadLetterFilter{EventType: "order.created", State: outbox.DeadLetterReplayed})

	// Cursor pagination.
	var pages [][]int64
	var after int64
	for range 10 {
		page := s.list(t, outbox.DeadLetterFilter{AfterID: after, Limit: 2})
		if len(page) == 0 {
			break
		}
		pages = append(pages, dlIDs(page))
		after = page[len(page)-1].ID
	}
	ids := dlIDs(all)
	want := [][]int64{ids[0:2], ids[2:4], ids[4:5]}
	if !reflect.DeepEqual(pages, want) {
		t.Fatalf("pages of 2: %v, want %v", pages, want)
	}
	var afterSecond []string
	for _, dl := range all[2:] {
		if dl.AggregateType == "order" {
			afterSecond = append(afterSecond, dl.AggregateID)
		}
	}
	check(outbox.DeadLetterFilter{AfterID: ids[1], AggregateType: "order"}, afterSecond...)

	// The default page is 100; a larger limit is allowed up to the driver's maximum.
	var many []outbox.Event
	for i := range 100 {
		many = append(many, s.ev(fmt.Sprintf("m%03d", i)))
	}
	s.enqueue(t, many...)
	b := s.claim(t, 1000)
	if len(b.Records()) != 100 {
		t.Fatalf("claimed %d of 100 heads", len(b.Records()))
	}
	s.finishAll(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "bulk"})
	if n := len(s.list(t, outbox.DeadLetterFilter{})); n != 100 {
		t.Errorf("ListDeadLetters with no limit returned %d of 105, want the default 100", n)
	}
	if n := len(s.list(t, outbox.DeadLetterFilter{Limit: 500})); n != 105 {
		t.Errorf("ListDeadLetters(limit 500) returned %d, want 105", n)
	}
	if n := len(s.list(t, outbox.DeadLetterFilter{Limit: 3})); n != 3 {
		t.Errorf("ListDeadLetters(limit 3) returned %d, want 3", n)
	}
}

// testInvalidFilters checks that both drivers refuse the same bad filters
// with outbox.ErrInvalidFilter, naming the field, before the database sees
// them (PostgreSQL would fail on a NUL or bad UTF-8 with an error of its
// own; SQLite would run the query), and that a refused replay changes
// nothing.
func testInvalidFilters[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.event("order", "a", "x"), s.event("order", "b", "y"))
	dls := s.deadLetter(t, "poison", "order/a#1", "order/b#1")
	s.expectCounts(t, 0, 0, 2)

	long := strings.Repeat("é", outbox.MaxNameLen/2+1) // 256 bytes, 128 characters
	for _, tc := range []struct {
		name  string
		f     outbox.DeadLetterFilter
		field string
	}{
		{"NUL in aggregate id", outbox.DeadLetterFilter{AggregateID: "a\x00b"}, "AggregateID"},
		{"NUL in aggregate type", outbox.DeadLetterFilter{AggregateType: "order\x00"}, "AggregateType"},
		{"NUL in event type", outbox.DeadLetterFilter{EventType: "\x00"}, "EventType"},
		{"control character", outbox.DeadLetterFilter{AggregateID: "a\tb"}, "AggregateID"},
		{"C1 control character", outbox.DeadLetterFilter{EventType: "x\u0085"}, "EventType"},
		{"invalid UTF-8", outbox.DeadLetterFilter{AggregateType: "ord\xffer"}, "AggregateType"},
		{"too long", outbox.DeadLetterFilter{AggregateID: long}, "AggregateID"},
		{"unknown state", outbox.DeadLetterFilter{State: "closed"}, "State"},
		{"state in upper case", outbox.DeadLetterFilter{State: "OPEN"}, "State"},
		{"negative cursor", outbox.DeadLetterFilter{AfterID: -1}, "AfterID"},
		{"minimum cursor", outbox.DeadLetterFilter{AfterID: -1 << 63}, "AfterID"},
		{"negative limit", outbox.DeadLetterFilter{Limit: -1}, "Limit"},
	} {
		check := func(op string, err error) {
			t.Helper()
			var fe *outbox.FilterError
			if !errors.Is(err, outbox.ErrInvalidFilter) || !errors.As(err, &fe) {
				t.Errorf("%s: %s = %v, want ErrInvalidFilter", tc.name, op, err)
				return
			}
			if len(fe.Fields) != 1 || fe.Fields[0].Field != tc.field {
				t.Errorf("%s: %s refused %+v, want the field %s", tc.name, op, fe.Fields, tc.field)
			}
		}
		_, err := s.d.ListDeadLetters(s.ctx, tc.f)
		check("ListDeadLetters", err)
		n, err := s.d.ReplayDeadLetters(s.ctx, tc.f)
		check("ReplayDeadLetters", err)
		if n != 0 {
			t.Errorf("%s: ReplayDeadLetters replayed %d", tc.name, n)
		}
	}
	// Every field at fault is named, in the struct's order.
	_, err := s.d.ListDeadLetters(s.ctx, outbox.DeadLetterFilter{State: "x", EventType: "\x00", Limit: -5})
	var fe *outbox.FilterError
	if !errors.As(err, &fe) || len(fe.Fields) != 3 || fe.Fields[0].Field != "State" ||
		fe.Fields[1].Field != "EventType" || fe.Fields[2].Field != "Limit" {
		t.Errorf("three bad fields: %v", err)
	}
	// Nothing was replayed.
	s.expectCounts(t, 0, 0, 2)
	for k, dl := range dls {
		if got := s.get(t, dl.ID); got.State() != outbox.DeadLetterOpen {
			t.Errorf("%s: state %s after refused replays", k, got.State())
		}
	}

	// Values at the limits are filters like any other, on both databases.
	if got := s.list(t, outbox.DeadLetterFilter{AggregateID: strings.Repeat("x", outbox.MaxNameLen)}); len(got) != 0 {
		t.Errorf("a %d-byte aggregate id lists %d dead letters", outbox.MaxNameLen, len(got))
	}
	if got := s.list(t, outbox.DeadLetterFilter{AggregateID: "a", EventType: "x"}); len(got) != 1 {
		t.Errorf("aggregate a, type x: %d dead letters, want 1", len(got))
	}
	if got := s.list(t, outbox.DeadLetterFilter{AfterID: 1<<63 - 1}); len(got) != 0 {
		t.Errorf("after the largest id: %d dead letters", len(got))
	}
	if got := s.list(t, outbox.DeadLetterFilter{AfterID: 0}); len(got) != 2 {
		t.Errorf("after 0: %d dead letters, want 2", len(got))
	}

	// DeadLetterAll matches every state, as "" does; a replay with it takes the open ones.
	if err := s.d.DiscardDeadLetter(s.ctx, dls["order/b#1"].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if got := s.list(t, outbox.DeadLetterFilter{State: outbox.DeadLetterAll}); len(got) != 2 {
		t.Errorf("state all: %d dead letters, want 2", len(got))
	}
	n, err := s.d.ReplayDeadLetters(s.ctx, outbox.DeadLetterFilter{State: outbox.DeadLetterAll})
	if err != nil || n != 1 {
		t.Fatalf("ReplayDeadLetters(state all) = %d, %v; want 1", n, err)
	}
	s.publishNext(t, "order/a#1")
	s.expectCounts(t, 0, 0, 0)
}

// filterOrder returns aggIDs ordered as all lists them.
func filterOrder(all []outbox.DeadLetter, aggIDs []string) []string {
	var out []string
	for _, dl := range all {
		if slices.Contains(aggIDs, dl.AggregateID) {
			out = append(out, dl.AggregateID)
		}
	}
	return out
}

func testPrune[TTx any](t *testing.T, s *suite[TTx]) {
	s.enqueue(t, s.ev("A"), s.ev("B"), s.ev("C"), s.ev("D"), s.ev("E"))
	dls := s.deadLetter(t, "poison", "order/A#1", "order/B#1", "order/C#1", "order/D#1", "order/E#1")
	for _, k := range []string{"order/A#1", "order/B#1"} {
		if err := s.d.ReplayDeadLetter(s.ctx, dls[k].ID); err != nil {
			t.Fatalf("ReplayDeadLetter: %v", err)
		}
	}
	for _, k := range []string{"order/C#1", "order/D#1"} {
		if err := s.d.DiscardDeadLetter(s.ctx, dls[k].ID, "obsolete"); err != nil {
			t.Fatalf("DiscardDeadLetter: %v", err)
		}
	}
	prune := func(p outbox.PruneParams, want int) {
		t.Helper()
		n, err := s.d.PruneDeadLetters(s.ctx, p)
		if err != nil || n != want {
			t.Fatalf("PruneDeadLetters(%+v) = %d, %v; want %d", p, n, err, want)
		}
	}
	if _, err := s.d.PruneDeadLetters(s.ctx, outbox.PruneParams{OlderThan: -time.Second}); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Fatalf("negative OlderThan: %v, want ErrInvalidFilter", err)
	}
	// Nothing was resolved an hour ago.
	prune(outbox.PruneParams{OlderThan: time.Hour, IncludeOpen: true}, 0)
	if got := len(s.list(t, outbox.DeadLetterFilter{})); got != 5 {
		t.Fatalf("%d dead letters after pruning none, want 5", got)
	}
	time.Sleep(20 * time.Millisecond)
	// The four resolved ones go, one per transaction; the open one stays.
	prune(outbox.PruneParams{OlderThan: 10 * time.Millisecond, BatchSize: 1}, 4)
	left := s.list(t, outbox.DeadLetterFilter{})
	if len(left) != 1 || left[0].ID != dls["order/E#1"].ID {
		t.Fatalf("after pruning the resolved ones: %v, want only E's", dlIDs(left))
	}
	prune(outbox.PruneParams{OlderThan: 10 * time.Millisecond}, 0)
	// The replayed events are back in the outbox, untouched by the prune.
	s.expectCounts(t, 2, 0, 1)
	prune(outbox.PruneParams{OlderThan: 10 * time.Millisecond, IncludeOpen: true}, 1)
	s.expectCounts(t, 2, 0, 0)
	if _, err := s.d.GetDeadLetter(s.ctx, dls["order/E#1"].ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("GetDeadLetter of a pruned dead letter: %v, want ErrNotFound", err)
	}
}

func testStats[TTx any](t *testing.T, s *suite[TTx]) {
	if st := s.stats(t); st != (outbox.Stats{}) {
		t.Fatalf("empty Stats = %+v, want zero", st)
	}
	s.enqueue(t, s.ev("A"))
	time.Sleep(5 * time.Millisecond) // distinct created times
	s.enqueue(t, s.ev("A"))
	time.Sleep(5 * time.Millisecond)
	s.enqueue(t, s.ev("B"), s.ev("C"))
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1", "order/C#1")
	var oldest time.Time
	outcomes := make([]outbox.Outcome, 3)
	for i, r := range b.Records() {
		switch r.AggregateID {
		case "A":
			oldest = r.CreatedAt
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "x"}
		case "B":
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "x", Delay: time.Hour}
		case "C":
			outcomes[i] = published
		}
	}
	st := s.stats(t)
	if st.Pending != 4 || st.Retrying != 0 || st.DeadLetters != 0 || !st.OldestPending.Equal(oldest) {
		t.Fatalf("Stats with 4 pending = %+v, want pending 4, oldest %v", st, oldest)
	}
	if !near(st.OldestPending, time.Now()) {
		t.Fatalf("OldestPending %v is not near now", st.OldestPending)
	}
	s.finish(t, b, outcomes...)
	// Left: A#2 (parked) and B#1 (retrying); A#1 is a dead letter.
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10, MoveOnPastDeadLetters: true}, "order/A#2")
	a2 := b.Records()[0].CreatedAt
	s.release(t, b)
	if !a2.After(oldest) {
		t.Fatalf("A#2 created %v, not after A#1 (%v)", a2, oldest)
	}
	st = s.stats(t)
	if st.Pending != 2 || st.Retrying != 1 || st.DeadLetters != 1 || st.Parked != 1 || !st.OldestPending.Equal(a2) {
		t.Fatalf("Stats = %+v, want pending 2, retrying 1, dead letters 1, parked 1 (A#2), oldest %v", st, a2)
	}
	// Parked: the events behind the lowest open dead letter of their
	// aggregate, not those before it, nor those of other aggregates.
	s.enqueue(t, s.ev("A"), s.ev("A"), s.ev("D"))
	if st := s.stats(t); st.Pending != 5 || st.Parked != 3 {
		t.Fatalf("Stats = %+v, want pending 5, parked 3", st)
	}
	// A's later events fail too while moving on: two open dead letters of A
	// count A's remaining events once.
	b = s.claimExpect(t, outbox.ClaimParams{Limit: 10, MoveOnPastDeadLetters: true}, "order/A#2", "order/D#1")
	outcomes = make([]outbox.Outcome, 2)
	for i, r := range b.Records() {
		outcomes[i] = published
		if r.AggregateID == "A" {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "x"}
		}
	}
	s.finish(t, b, outcomes...)
	if st := s.stats(t); st.Pending != 3 || st.DeadLetters != 2 || st.Parked != 2 {
		t.Fatalf("Stats = %+v, want pending 3 (A#3, A#4, B#1), dead letters 2, parked 2", st)
	}
	for _, dl := range s.list(t, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen}) {
		if err := s.d.DiscardDeadLetter(s.ctx, dl.ID, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.stats(t); st.Pending != 3 || st.DeadLetters != 0 || st.Parked != 0 {
		t.Fatalf("Stats after discarding = %+v, want pending 3, parked 0", st)
	}
}

func testConcurrentClaims[TTx any](t *testing.T, s *suite[TTx]) {
	const aggregates, perAggregate, relays = 20, 5, 4
	var events []outbox.Event
	for range perAggregate {
		for a := range aggregates {
			events = append(events, s.ev(fmt.Sprintf("agg%02d", a)))
		}
	}
	s.enqueue(t, events...)
	var (
		mu   sync.Mutex
		seen = map[string][]int64{} // per aggregate, in the order published
		ids  = map[uuid.UUID]int{}
		wg   sync.WaitGroup
		errs = make(chan error, relays)
	)
	total := aggregates * perAggregate
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ids) >= total
	}
	for range relays {
		wg.Go(func() {
			for !done() {
				if s.ctx.Err() != nil {
					errs <- s.ctx.Err()
					return
				}
				b, err := s.d.Claim(s.ctx, outbox.ClaimParams{Limit: 7})
				if err != nil {
					errs <- err
					return
				}
				b = s.track(b)
				recs := b.Records()
				// "Publish" before Finish: the next event of an aggregate
				// cannot be claimed before this Finish commits.
				mu.Lock()
				for _, r := range recs {
					seen[r.AggregateID] = append(seen[r.AggregateID], r.Sequence)
					ids[r.ID]++
				}
				mu.Unlock()
				outcomes := make([]outbox.Outcome, len(recs))
				for i := range outcomes {
					outcomes[i] = published
				}
				if err := b.Finish(s.ctx, outcomes); err != nil {
					errs <- err
					return
				}
				if len(recs) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("relay: %v", err)
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("event %s published %d times", id, n)
		}
	}
	for agg, got := range seen {
		if !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
			t.Fatalf("aggregate %s published as %v, want 1..5 in order", agg, got)
		}
	}
	if len(seen) != aggregates {
		t.Fatalf("%d aggregates published, want %d", len(seen), aggregates)
	}
	s.expectCounts(t, 0, 0, 0)
}

func testListen[TTx any](t *testing.T, s *suite[TTx]) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	wakes := make(chan struct{}, 1)
	wake := func() {
		select {
		case wakes <- struct{}{}:
		default:
		}
	}
	listenDone := make(chan error, 1)
	go func() { listenDone <- s.d.Listen(ctx, wake) }()

	// Let the listener settle and forget any wake-up it gives on start.
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-listenDone:
		t.Fatalf("Listen returned early: %v", err)
	case <-wakes:
	default:
	}
	// A listener may take a moment to subscribe: commit until one wakes it.
	deadline := time.Now().Add(10 * time.Second)
	for woke := false; !woke; {
		s.enqueue(t, s.ev("A"))
		select {
		case <-wakes:
			woke = true
		case err := <-listenDone:
			t.Fatalf("Listen returned before ctx ended: %v", err)
		case <-time.After(500 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("Listen did not call wake within 10s of commits")
			}
		}
	}
	// Each later commit wakes it again.
	for i := range 3 {
		s.enqueue(t, s.ev("B"))
		select {
		case <-wakes:
		case <-time.After(5 * time.Second):
			t.Fatalf("commit %d after the first did not wake the listener", i+1)
		}
	}
	cancel()
	select {
	case err := <-listenDone:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Listen returned %v after ctx ended, want nil or context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not return within 10s of ctx ending")
	}
}

// holdTx runs fn in a transaction in another goroutine and keeps the
// transaction open until commit or rollback is called. It returns once fn
// has run.
func holdTx[TTx any](t *testing.T, s *suite[TTx], fn func(tx TTx) error) (commit, rollback func() error) {
	t.Helper()
	ran := make(chan error, 1)
	end := make(chan error, 1)
	result := make(chan error, 1)
	go func() {
		result <- s.d.WithTx(s.ctx, func(tx TTx) error {
			if err := fn(tx); err != nil {
				ran <- err
				return err
			}
			ran <- nil
			return <-end
		})
	}()
	if err := <-ran; err != nil {
		t.Fatalf("in held transaction: %v (WithTx: %v)", err, <-result)
	}
	var once sync.Once
	finish := func(err error) error {
		var res error
		once.Do(func() {
			end <- err
			res = <-result
		})
		return res
	}
	t.Cleanup(func() { _ = finish(errRollback) })
	return func() error { return finish(nil) }, func() error { return finish(errRollback) }
}

func testLateCommit[TTx any](t *testing.T, s *suite[TTx]) {
	var enqA []outbox.Enqueued
	commit, _ := holdTx(t, s, func(tx TTx) error {
		var err error
		enqA, err = s.c.EnqueueTx(s.ctx, tx, s.ev("A"))
		return err
	})
	if enqA[0].Sequence != 1 {
		t.Fatalf("held event sequence %d, want 1", enqA[0].Sequence)
	}
	// B commits after A was written but before A commits.
	s.enqueue(t, s.ev("B"))
	s.publishNext(t, "order/B#1")
	s.enqueue(t, s.ev("B"))
	s.publishNext(t, "order/B#2")
	if err := commit(); err != nil {
		t.Fatalf("commit of the held transaction: %v", err)
	}
	// G4: the late commit is still claimed.
	recs := s.publishNext(t, "order/A#1")
	if recs[0].ID != enqA[0].ID {
		t.Fatalf("late event id %s, want %s", recs[0].ID, enqA[0].ID)
	}
	s.expectCounts(t, 0, 0, 0)
}

func testWriterOrder[TTx any](t *testing.T, s *suite[TTx]) {
	// A transaction holds A#1; a second writer of A waits for it and takes
	// A#2 only after A#1 commits.
	_, rollback := holdTx(t, s, func(tx TTx) error {
		enq, err := s.c.EnqueueTx(s.ctx, tx, s.ev("A"))
		if err == nil && enq[0].Sequence != 1 {
			err = fmt.Errorf("held event sequence %d, want 1", enq[0].Sequence)
		}
		return err
	})
	type result struct {
		enq []outbox.Enqueued
		err error
	}
	second := make(chan result, 1)
	go func() {
		enq, err := s.c.Enqueue(s.ctx, s.ev("A"))
		second <- result{enq, err}
	}()
	select {
	case r := <-second:
		t.Fatalf("a second writer of the aggregate did not wait for the first: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	// Other aggregates are not held up.
	s.enqueue(t, s.ev("B"))
	// The first writer rolls back: the waiting writer takes sequence 1.
	if err := rollback(); !errors.Is(err, errRollback) {
		t.Fatalf("rollback of the held transaction: %v", err)
	}
	r := <-second
	if r.err != nil || r.enq[0].Sequence != 1 {
		t.Fatalf("waiting writer after a rollback: %+v, want sequence 1", r)
	}

	var held []outbox.Enqueued
	commit, _ := holdTx(t, s, func(tx TTx) error {
		var err error
		held, err = s.c.EnqueueTx(s.ctx, tx, s.ev("A"))
		return err
	})
	go func() {
		enq, err := s.c.Enqueue(s.ctx, s.ev("A"))
		second <- result{enq, err}
	}()
	select {
	case r := <-second:
		t.Fatalf("a second writer of the aggregate did not wait for the first: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if err := commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	r = <-second
	if r.err != nil || held[0].Sequence != 2 || r.enq[0].Sequence != 3 {
		t.Fatalf("writers in turn: held %+v, waiting %+v; want sequences 2 then 3", held, r)
	}
	s.publishNext(t, "order/A#1", "order/B#1")
	recs := s.publishNext(t, "order/A#2")
	if recs[0].ID != held[0].ID {
		t.Fatalf("A#2 has id %s, want the first writer's %s", recs[0].ID, held[0].ID)
	}
	s.publishNext(t, "order/A#3")
}

// testReplayKeyTaken: a dead letter whose idempotency key a newer pending
// event has taken still replays (exactly once), without the key; one whose
// key is free gets it back.
func testReplayKeyTaken[TTx any](t *testing.T, s *suite[TTx]) {
	taken, free := s.ev("A"), s.ev("B")
	taken.IdempotencyKey, free.IdempotencyKey = "key-taken", "key-free"
	s.enqueue(t, taken, free)
	dls := s.deadLetter(t, "poison", "order/A#1", "order/B#1")
	newer := s.ev("C")
	newer.IdempotencyKey = "key-taken"
	s.enqueue(t, newer)
	for _, k := range []string{"order/A#1", "order/B#1"} {
		if err := s.d.ReplayDeadLetter(s.ctx, dls[k].ID); err != nil {
			t.Fatalf("replay %s: %v", k, err)
		}
	}
	b := s.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/A#1", "order/B#1", "order/C#1")
	got := map[string]string{}
	for _, r := range b.Records() {
		got[key(r)] = r.IdempotencyKey
	}
	s.release(t, b)
	want := map[string]string{"order/A#1": "", "order/B#1": "key-free", "order/C#1": "key-taken"}
	if !maps.Equal(got, want) {
		t.Fatalf("idempotency keys after replay %v, want %v", got, want)
	}
}

// testCallerNumbered: events the caller numbers keep their sequences, are
// claimed head first like any other, and a number already taken is a
// duplicate; the outbox's own counter is left alone.
func testCallerNumbered[TTx any](t *testing.T, s *suite[TTx]) {
	x1, x2 := s.ev("X"), s.ev("X")
	x1.Sequence, x2.Sequence = 1, 2
	if got := s.enqueue(t, x1, x2); got[0].Sequence != 1 || got[1].Sequence != 2 {
		t.Fatalf("caller-numbered events stored as %+v, want sequences 1 and 2", got)
	}
	again := s.ev("X")
	again.Sequence = 2
	if _, err := s.c.Enqueue(s.ctx, again); !errors.Is(err, outbox.ErrDuplicate) {
		t.Fatalf("a taken sequence: %v, want ErrDuplicate", err)
	}
	if got := s.enqueue(t, s.ev("Y")); got[0].Sequence != 1 {
		t.Fatalf("an outbox-numbered aggregate starts at %d, want 1", got[0].Sequence)
	}
	mixed := s.ev("Z")
	mixed.Sequence = 1
	if _, err := s.c.Enqueue(s.ctx, mixed, s.ev("Z")); !errors.Is(err, outbox.ErrInvalidEvent) {
		t.Fatalf("one aggregate numbered both ways in one call: %v, want ErrInvalidEvent", err)
	}
	x3 := s.ev("X")
	x3.Sequence = 3
	s.enqueue(t, x3)
	s.publishNext(t, "order/X#1", "order/Y#1")
	s.publishNext(t, "order/X#2")
	s.publishNext(t, "order/X#3")
	s.expectCounts(t, 0, 0, 0)
}

// testNamedOutboxes runs two outboxes with other names in the database of
// s's driver: each numbers, claims, dead-letters and counts only its own
// events, even for an aggregate of the same type and id.
func testNamedOutboxes[TTx any](t *testing.T, s *suite[TTx], named func(*testing.T, outbox.Driver[TTx], string) outbox.Driver[TTx]) {
	pay := &suite[TTx]{d: named(t, s.d, "payments"), ctx: s.ctx}
	inv := &suite[TTx]{d: named(t, s.d, "invoices"), ctx: s.ctx}
	for _, o := range []*suite[TTx]{pay, inv} {
		o.c = outbox.NewClient(o.d)
		t.Cleanup(o.releaseOpen)
	}
	// The same aggregate in all three outboxes: each numbers it from 1.
	for i, o := range []*suite[TTx]{s, pay, inv, pay} {
		want := []int64{1}
		if i == 3 {
			want = []int64{2}
		}
		if got := seqs(o.enqueue(t, o.ev("a"))); !slices.Equal(got, want) {
			t.Fatalf("outbox %d: sequences %v, want %v", i, got, want)
		}
	}
	inv.enqueue(t, inv.ev("b"))

	// Each claim sees its own outbox only. (One batch at a time: SQLite
	// has one writer.)
	b := pay.claimExpect(t, outbox.ClaimParams{Limit: 10}, "order/a#1")
	inv.expectCounts(t, 2, 0, 0)
	pay.finishAll(t, b, outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "poison"})
	inv.publishNext(t, "order/a#1", "order/b#1")

	// A dead letter in payments parks payments' a#2 only.
	pay.expectNothing(t, outbox.ClaimParams{Limit: 10})
	pay.expectCounts(t, 1, 0, 1)
	inv.expectCounts(t, 0, 0, 0)
	s.expectCounts(t, 1, 0, 0)
	if dls := inv.list(t, outbox.DeadLetterFilter{}); len(dls) != 0 {
		t.Fatalf("invoices lists payments' dead letters: %v", dls)
	}
	s.publishNext(t, "order/a#1")
	dls := pay.list(t, outbox.DeadLetterFilter{})
	if len(dls) != 1 {
		t.Fatalf("payments' dead letters: %v", dls)
	}
	if err := inv.d.ReplayDeadLetter(s.ctx, dls[0].ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("invoices replayed payments' dead letter: %v", err)
	}
	if err := pay.d.ReplayDeadLetter(s.ctx, dls[0].ID); err != nil {
		t.Fatalf("ReplayDeadLetter: %v", err)
	}
	pay.publishNext(t, "order/a#1")
	pay.publishNext(t, "order/a#2")
	for i, o := range []*suite[TTx]{s, pay, inv} {
		if st := o.stats(t); st.Pending != 0 || st.DeadLetters != 0 {
			t.Errorf("outbox %d: stats %+v, want empty", i, st)
		}
	}
}
