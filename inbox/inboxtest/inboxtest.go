// Package inboxtest is the conformance suite every inbox driver runs. A
// driver's test package calls Run from a test and Child from its TestMain
// (the crash test runs consumers as child processes of the test binary):
//
//	var harness = inboxtest.Harness[pgx.Tx]{Fresh: …, Open: …, Record: …, Applied: …}
//
//	func TestMain(m *testing.M) {
//		inboxtest.Child(harness) // returns unless this process is a child
//		goleak.VerifyTestMain(m)
//	}
//
//	func TestConformance(t *testing.T) { inboxtest.Run(t, harness) }
//
// The suite uses the driver only through package inbox, with a consumer
// table the harness keeps: each applied event is a row, in the order the
// handler wrote them.
package inboxtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/inbox"
)

// Harness describes the driver under test.
type Harness[TTx any] struct {
	// Fresh returns the address (a PostgreSQL URL, an SQLite file path) of
	// a new, empty database, dropped when t ends.
	Fresh func(t testing.TB) string
	// Open opens a migrated driver on the database at addr, with the
	// consumer table created, and a function that closes what it opened.
	Open func(ctx context.Context, addr string) (inbox.Driver[TTx], func(), error)
	// Record writes ev to the consumer table in tx.
	Record func(ctx context.Context, tx TTx, ev inbox.Event) error
	// Applied reads the consumer table in the order its rows were written.
	Applied func(ctx context.Context, d inbox.Driver[TTx]) ([]Applied, error)
}

// Applied is a row of the consumer table: an event the handler applied.
type Applied struct {
	AggregateID string
	Sequence    int64
	EventID     string
}

// opTimeout bounds each test, so that a driver that hangs fails.
const opTimeout = 3 * time.Minute

// Run runs the suite, each test in parallel on a database of its own.
func Run[TTx any](t *testing.T, h Harness[TTx]) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite[TTx])
	}{
		{"Outcomes", testOutcomes[TTx]},
		{"ConcurrentDuplicates", testConcurrentDuplicates[TTx]},
		{"ShuffledDelivery", testShuffled[TTx]},
		{"HandlerFailureLeavesNoRecord", testHandlerFailure[TTx]},
		{"FailureWhileReleasingRollsBackAll", testDrainFailure[TTx]},
		{"GapsAndSkipGap", testGaps[TTx]},
		{"Prune", testPrune[TTx]},
		{"InvalidEvents", testInvalid[TTx]},
		{"CrashLosesAndRepeatsNothing", testCrash[TTx]},
		{"BatchOutcomes", testBatchOutcomes[TTx]},
		{"BatchHandlerFailure", testBatchHandlerFailure[TTx]},
		{"BatchReleaseFailure", testBatchReleaseFailure[TTx]},
		{"BatchInvalidEvents", testBatchInvalid[TTx]},
		{"ShuffledBatches", testShuffledBatches[TTx]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newSuite(t, h))
		})
	}
}

// suite is one test's database, driver and consumer.
type suite[TTx any] struct {
	h    Harness[TTx]
	ctx  context.Context
	addr string
	d    inbox.Driver[TTx]

	mu   sync.Mutex
	fail func(ev inbox.Event) error // the handler fails when it returns an error
}

func newSuite[TTx any](t *testing.T, h Harness[TTx]) *suite[TTx] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	s := &suite[TTx]{h: h, ctx: ctx, addr: h.Fresh(t)}
	d, closeFn, err := h.Open(ctx, s.addr)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(closeFn)
	s.d = d
	return s
}

// inbox returns an inbox whose handler records each event in the consumer
// table, unless s.fail refuses it.
func (s *suite[TTx]) inbox() *inbox.Inbox[TTx] {
	return inbox.New(s.d, func(ctx context.Context, tx TTx, ev inbox.Event) error {
		s.mu.Lock()
		fail := s.fail
		s.mu.Unlock()
		if fail != nil {
			if err := fail(ev); err != nil {
				return err
			}
		}
		return s.h.Record(ctx, tx, ev)
	}, inbox.Config{})
}

func (s *suite[TTx]) failWhen(f func(ev inbox.Event) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func (s *suite[TTx]) applied(t testing.TB) []Applied {
	t.Helper()
	rows, err := s.h.Applied(s.ctx, s.d)
	if err != nil {
		t.Fatalf("read the consumer table: %v", err)
	}
	return rows
}

// Event returns an event of aggregate id with sequence seq and a fresh id,
// as an outbox relay publishes it.
func Event(aggregateID string, seq int64) inbox.Event {
	return inbox.Event{
		SpecVersion: "1.0", ID: uuid.Must(uuid.NewV7()).String(),
		Source: "/inboxtest", Type: "thing.changed", Subject: aggregateID, AggregateType: "thing",
		Time: time.Now().UTC(), DataContentType: "application/json",
		Data: []byte(fmt.Sprintf(`{"aggregate":%q,"sequence":%d}`, aggregateID, seq)), Sequence: seq,
	}
}

// Stream returns the events 1…perAggregate of aggregates a0, a1, … in a
// random order drawn from seed (the same seed, the same order).
func Stream(aggregates, perAggregate int, seed uint64) []inbox.Event {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed)) //nolint:gosec // a reproducible order, not a secret
	evs := make([]inbox.Event, 0, aggregates*perAggregate)
	for a := range aggregates {
		for q := 1; q <= perAggregate; q++ {
			ev := Event(fmt.Sprintf("a%d", a), int64(q))
			ev.ID = uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "inboxtest:%d/a%d/%d", seed, a, q)).String()
			evs = append(evs, ev)
		}
	}
	r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	return evs
}

// CheckInSequence fails t unless rows hold, for each of aggregates
// aggregates a0…, exactly the sequences 1…perAggregate, in this order.
func CheckInSequence(t testing.TB, rows []Applied, aggregates, perAggregate int) {
	t.Helper()
	per := map[string][]int64{}
	for _, r := range rows {
		per[r.AggregateID] = append(per[r.AggregateID], r.Sequence)
	}
	want := make([]int64, perAggregate)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if len(per) != aggregates {
		t.Errorf("%d aggregates applied, want %d", len(per), aggregates)
	}
	bad := 0
	for a := range aggregates {
		id := fmt.Sprintf("a%d", a)
		if got := per[id]; !slices.Equal(got, want) && bad < 5 {
			bad++
			t.Errorf("aggregate %s applied %v, want 1…%d once each, in order", id, got, perAggregate)
		}
	}
}

func mustJSON(t testing.TB, ev inbox.Event) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func process[TTx any](t testing.TB, in *inbox.Inbox[TTx], ctx context.Context, ev inbox.Event) inbox.Result {
	t.Helper()
	res, err := in.Process(ctx, ev)
	if err != nil {
		t.Fatalf("Process %s #%d: %v", ev.Subject, ev.Sequence, err)
	}
	return res
}

func expect(t testing.TB, what string, got, want inbox.Result) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %+v (%v), want %+v (%v)", what, got, got.Outcome, want, want.Outcome)
	}
}

func testOutcomes[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	e1, e2, e3, e4 := Event("x", 1), Event("x", 2), Event("x", 3), Event("x", 4)
	expect(t, "first event", process(t, in, s.ctx, e1), inbox.Result{Outcome: inbox.Applied, Last: 1})
	expect(t, "its duplicate", process(t, in, s.ctx, e1), inbox.Result{Outcome: inbox.Duplicate})
	expect(t, "#3 before #2", process(t, in, s.ctx, e3), inbox.Result{Outcome: inbox.Held, Last: 1})
	expect(t, "#4 before #2", process(t, in, s.ctx, e4), inbox.Result{Outcome: inbox.Held, Last: 1})
	expect(t, "held #3 again", process(t, in, s.ctx, e3), inbox.Result{Outcome: inbox.Duplicate})
	again3 := Event("x", 3)
	expect(t, "#3 under a new id while held", process(t, in, s.ctx, again3), inbox.Result{Outcome: inbox.Repeated, Last: 1})
	expect(t, "#2 fills the gap", process(t, in, s.ctx, e2), inbox.Result{Outcome: inbox.Applied, Released: 2, Last: 4})
	again1 := Event("x", 1)
	expect(t, "#1 under a new id", process(t, in, s.ctx, again1), inbox.Result{Outcome: inbox.Repeated, Last: 4})
	expect(t, "another aggregate", process(t, in, s.ctx, Event("y", 1)), inbox.Result{Outcome: inbox.Applied, Last: 1})
	expect(t, "a new aggregate starting late", process(t, in, s.ctx, Event("z", 2)), inbox.Result{Outcome: inbox.Held})

	got := s.applied(t)
	var ids []string
	for _, r := range got {
		ids = append(ids, fmt.Sprintf("%s#%d", r.AggregateID, r.Sequence))
	}
	if want := []string{"x#1", "x#2", "x#3", "x#4", "y#1"}; !slices.Equal(ids, want) {
		t.Fatalf("applied %v, want %v", ids, want)
	}
	if got[2].EventID != e3.ID || got[3].EventID != e4.ID {
		t.Fatalf("released events %s, %s, want the held ones %s, %s", got[2].EventID, got[3].EventID, e3.ID, e4.ID)
	}
}

// One event delivered to 8 workers at once is applied once; the others see a
// duplicate. Rounds of it give the workers many chances to race.
func testConcurrentDuplicates[TTx any](t *testing.T, s *suite[TTx]) {
	const workers, rounds = 8, 20
	in := s.inbox()
	for round := range rounds {
		ev := Event(fmt.Sprintf("a%d", round%4), int64(round/4+1))
		var (
			start    = make(chan struct{})
			wg       sync.WaitGroup
			outcomes = make([]inbox.Outcome, workers)
			errs     = make([]error, workers)
		)
		for w := range workers {
			wg.Go(func() {
				<-start
				res, err := in.Process(s.ctx, ev)
				outcomes[w], errs[w] = res.Outcome, err
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if n := count(outcomes, inbox.Applied); n != 1 || count(outcomes, inbox.Duplicate) != workers-1 {
			t.Fatalf("round %d: outcomes %v, want one applied and %d duplicates", round, outcomes, workers-1)
		}
	}
	CheckInSequence(t, s.applied(t), 4, rounds/4)
}

func count(os []inbox.Outcome, o inbox.Outcome) int {
	n := 0
	for _, x := range os {
		if x == o {
			n++
		}
	}
	return n
}

// 10,000 events over 100 aggregates, shuffled, with one in twenty delivered
// twice, by 4 workers at once: every aggregate ends applied 1…100 in order,
// and nothing is left held.
func testShuffled[TTx any](t *testing.T, s *suite[TTx]) {
	const aggregates, per, workers = 100, 100, 4
	evs := Stream(aggregates, per, 1)
	for i := 0; i < len(evs); i += 20 {
		evs = append(evs, evs[i]) // redelivered at the end
	}
	in := s.inbox()
	next := make(chan inbox.Event)
	var (
		wg sync.WaitGroup
		c  tally
	)
	for range workers {
		wg.Go(func() {
			for ev := range next {
				res, err := in.Process(s.ctx, ev)
				c.add(res, err)
			}
		})
	}
	for _, ev := range evs {
		next <- ev
	}
	close(next)
	wg.Wait()
	checkStream(t, s, &c, len(evs), aggregates, per)
}

// tally adds up the outcomes of a stream taken by concurrent workers.
type tally struct {
	mu       sync.Mutex
	outcomes map[inbox.Outcome]int
	released int
	firstErr error
}

func (c *tally) add(res inbox.Result, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outcomes == nil {
		c.outcomes = map[inbox.Outcome]int{}
	}
	if err != nil && c.firstErr == nil {
		c.firstErr = err
	}
	c.outcomes[res.Outcome]++
	c.released += res.Released
}

// checkStream fails t unless the stream of delivered events (aggregates
// × per events, the rest redeliveries) was applied once each, in order,
// with nothing left held.
func checkStream[TTx any](t *testing.T, s *suite[TTx], c *tally, delivered, aggregates, per int) {
	t.Helper()
	if c.firstErr != nil {
		t.Fatal(c.firstErr)
	}
	CheckInSequence(t, s.applied(t), aggregates, per)
	if got, want := c.outcomes[inbox.Applied]+c.released, aggregates*per; got != want {
		t.Errorf("applied %d + released %d = %d, want %d", c.outcomes[inbox.Applied], c.released, got, want)
	}
	if got, want := c.outcomes[inbox.Duplicate], delivered-aggregates*per; got != want {
		t.Errorf("%d duplicates, want %d", got, want)
	}
	if c.outcomes[inbox.Repeated] != 0 {
		t.Errorf("%d repeated, want none", c.outcomes[inbox.Repeated])
	}
	if gaps, err := s.d.Gaps(s.ctx, 0); err != nil || len(gaps) != 0 {
		t.Errorf("Gaps after the stream: %v, %v; want none", gaps, err)
	}
}

var errRefused = errors.New("handler refuses")

// A failing handler leaves neither its writes nor the id record: the same
// event delivered again is applied, not a duplicate.
func testHandlerFailure[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	ev := Event("a0", 1)
	s.failWhen(func(inbox.Event) error { return errRefused })
	_, err := in.Process(s.ctx, ev)
	var he *inbox.HandlerError
	if !errors.Is(err, errRefused) || !errors.As(err, &he) || he.Event.ID != ev.ID {
		t.Fatalf("Process with a failing handler: %v, want a *HandlerError wrapping errRefused", err)
	}
	if rows := s.applied(t); len(rows) != 0 {
		t.Fatalf("the failed event left %v in the consumer table", rows)
	}
	// The aggregate did not advance either: #2 waits for #1.
	expect(t, "#2 after #1 failed", process(t, in, s.ctx, Event("a0", 2)), inbox.Result{Outcome: inbox.Held})
	s.failWhen(nil)
	expect(t, "#1 delivered again", process(t, in, s.ctx, ev), inbox.Result{Outcome: inbox.Applied, Released: 1, Last: 2})
	CheckInSequence(t, s.applied(t), 1, 2)
}

// A held event whose handler fails while it is released rolls back the
// event that released it too; both are applied once the handler recovers.
func testDrainFailure[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	e1, e2, e3 := Event("a0", 1), Event("a0", 2), Event("a0", 3)
	expect(t, "#3 first", process(t, in, s.ctx, e3), inbox.Result{Outcome: inbox.Held})
	expect(t, "#2", process(t, in, s.ctx, e2), inbox.Result{Outcome: inbox.Held})
	s.failWhen(func(ev inbox.Event) error {
		if ev.Sequence == 3 {
			return errRefused
		}
		return nil
	})
	if _, err := in.Process(s.ctx, e1); !errors.Is(err, errRefused) {
		t.Fatalf("#1 releasing a failing #3: %v, want errRefused", err)
	}
	if rows := s.applied(t); len(rows) != 0 {
		t.Fatalf("the failed release left %v in the consumer table", rows)
	}
	gaps, err := s.d.Gaps(s.ctx, 0)
	if err != nil || len(gaps) != 1 || gaps[0].Held != 2 || gaps[0].LastApplied != 0 {
		t.Fatalf("Gaps after the failed release: %+v, %v; want #2 and #3 still held", gaps, err)
	}
	s.failWhen(nil)
	expect(t, "#1 again", process(t, in, s.ctx, e1), inbox.Result{Outcome: inbox.Applied, Released: 2, Last: 3})
	CheckInSequence(t, s.applied(t), 1, 3)
}

func testGaps[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	process(t, in, s.ctx, Event("a0", 1))
	process(t, in, s.ctx, Event("a0", 4))
	process(t, in, s.ctx, Event("a0", 5))
	process(t, in, s.ctx, Event("a0", 7))
	gaps, err := in.Gaps(s.ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 {
		t.Fatalf("Gaps = %+v, want one", gaps)
	}
	g := gaps[0]
	if g.AggregateType != "thing" || g.AggregateID != "a0" || g.LastApplied != 1 || g.FirstHeld != 4 || g.Held != 3 || g.Missing() != 2 || g.Since.IsZero() {
		t.Fatalf("gap %+v, want thing/a0 last 1, first held 4, 3 held, 2 missing", g)
	}
	if gaps, err := in.Gaps(s.ctx, time.Hour); err != nil || len(gaps) != 0 {
		t.Fatalf("Gaps older than an hour: %+v, %v; want none", gaps, err)
	}
	if _, err := in.Gaps(s.ctx, -time.Second); err == nil {
		t.Fatal("Gaps with a negative age: no error")
	}
	// Skipping the gap releases #4 and #5; #7 waits for #6.
	if n, err := in.SkipGap(s.ctx, "thing", "a0"); err != nil || n != 2 {
		t.Fatalf("SkipGap = %d, %v; want 2 released", n, err)
	}
	if n, err := in.SkipGap(s.ctx, "thing", "a0"); err != nil || n != 1 {
		t.Fatalf("SkipGap again = %d, %v; want #7 released", n, err)
	}
	if n, err := in.SkipGap(s.ctx, "thing", "a0"); err != nil || n != 0 {
		t.Fatalf("SkipGap with nothing held = %d, %v; want 0", n, err)
	}
	if _, err := in.SkipGap(s.ctx, "thing", "nobody"); !errors.Is(err, inbox.ErrUnknownAggregate) {
		t.Fatalf("SkipGap of an unknown aggregate: %v, want ErrUnknownAggregate", err)
	}
	expect(t, "#8 after the skips", process(t, in, s.ctx, Event("a0", 8)), inbox.Result{Outcome: inbox.Applied, Last: 8})
	var seqs []int64
	for _, r := range s.applied(t) {
		seqs = append(seqs, r.Sequence)
	}
	if want := []int64{1, 4, 5, 7, 8}; !slices.Equal(seqs, want) {
		t.Fatalf("applied %v, want %v", seqs, want)
	}
}

func testPrune[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	evs := make([]inbox.Event, 25)
	for i := range evs {
		evs[i] = Event("a0", int64(i+1))
		process(t, in, s.ctx, evs[i])
	}
	held := Event("a0", 30)
	process(t, in, s.ctx, held)
	if n, err := in.Prune(s.ctx, inbox.PruneParams{OlderThan: time.Hour, BatchSize: 10}); err != nil || n != 0 {
		t.Fatalf("Prune older than an hour = %d, %v; want 0", n, err)
	}
	if _, err := in.Prune(s.ctx, inbox.PruneParams{OlderThan: -time.Second}); err == nil {
		t.Fatal("Prune with a negative age: no error")
	}
	if n, err := in.Prune(s.ctx, inbox.PruneParams{BatchSize: 10}); err != nil || n != 26 {
		t.Fatalf("Prune everything in batches of 10 = %d, %v; want 26", n, err)
	}
	// The ids are gone, the sequence is not: a late redelivery is caught as
	// a repeat, and the held event still waits.
	expect(t, "#3 after its id was pruned", process(t, in, s.ctx, evs[2]), inbox.Result{Outcome: inbox.Repeated, Last: 25})
	if gaps, err := in.Gaps(s.ctx, 0); err != nil || len(gaps) != 1 || gaps[0].FirstHeld != 30 {
		t.Fatalf("Gaps after Prune: %+v, %v; want #30 still held", gaps, err)
	}
	CheckInSequence(t, s.applied(t), 1, 25)
}

func testInvalid[TTx any](t *testing.T, s *suite[TTx]) {
	in := s.inbox()
	for name, mutate := range map[string]func(*inbox.Event){
		"no id":        func(e *inbox.Event) { e.ID = "" },
		"no subject":   func(e *inbox.Event) { e.Subject = "" },
		"no aggregate": func(e *inbox.Event) { e.AggregateType = "" },
		"sequence 0":   func(e *inbox.Event) { e.Sequence = 0 },
		"NUL in id":    func(e *inbox.Event) { e.ID = "a\x00b" },
		"long subject": func(e *inbox.Event) { e.Subject = string(make([]byte, inbox.MaxNameLen+1)) },
	} {
		ev := Event("v", 1)
		mutate(&ev)
		if _, err := in.Process(s.ctx, ev); !errors.Is(err, inbox.ErrInvalidEvent) {
			t.Errorf("%s: %v, want ErrInvalidEvent", name, err)
		}
	}
	if err := in.Deliver(s.ctx, []byte(`{"specversion":"1.0"}`)); !errors.Is(err, inbox.ErrInvalidEvent) {
		t.Errorf("Deliver of a body that is no event: %v, want ErrInvalidEvent", err)
	}
	if rows := s.applied(t); len(rows) != 0 {
		t.Fatalf("invalid events left %v", rows)
	}
}
