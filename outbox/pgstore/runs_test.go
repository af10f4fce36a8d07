package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// runBroker is an in-memory broker that keeps runs as Kafka's idempotent
// producer or a JetStream atomic batch does: it stores a call's messages in
// order and, once one of an aggregate's messages fails, stores none of that
// aggregate's later ones. It fails messages at random, and sometimes a whole
// call as an outage, and records every order violation it sees.
type runBroker struct {
	mu         sync.Mutex
	rng        *rand.Rand
	last       map[string]int64 // aggregate → last stored sequence
	stored     int
	runCalls   int // calls that held two or more events of one aggregate
	violations []string
	failRate   float64
}

func (b *runBroker) KeepsRuns() bool { return true }
func (b *runBroker) Close() error    { return nil }

var errFlaky = errors.New("flaky broker")

func (b *runBroker) Publish(_ context.Context, msgs []outbox.Message) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := make([]error, len(msgs))
	if b.rng.Float64() < b.failRate/4 {
		return outbox.AllFailed(len(msgs), fmt.Errorf("%w: %w", outbox.ErrBrokerUnavailable, errFlaky))
	}
	broken := map[string]bool{}
	perAgg := map[string]int{}
	for i, m := range msgs {
		agg := m.AggregateType + "/" + m.AggregateID
		perAgg[agg]++
		if broken[agg] {
			errs[i] = outbox.ErrRunBroken
			continue
		}
		if b.rng.Float64() < b.failRate {
			errs[i] = errFlaky
			broken[agg] = true
			continue
		}
		if m.Sequence != b.last[agg]+1 {
			b.violations = append(b.violations, fmt.Sprintf("%s#%d stored after #%d", agg, m.Sequence, b.last[agg]))
		}
		b.last[agg] = m.Sequence
		b.stored++
	}
	for _, n := range perAgg {
		if n > 1 {
			b.runCalls++
			break
		}
	}
	return errs
}

// plainBroker is a runBroker that does not keep runs: the relay must give it
// one event per aggregate per call (waves), which it checks.
type plainBroker struct{ b *runBroker }

func (p plainBroker) Close() error { return nil }

func (p plainBroker) Publish(ctx context.Context, msgs []outbox.Message) []error {
	seen := map[string]bool{}
	for _, m := range msgs {
		agg := m.AggregateType + "/" + m.AggregateID
		if seen[agg] {
			p.b.mu.Lock()
			p.b.violations = append(p.b.violations, fmt.Sprintf("%s: two events in one call to a publisher that keeps no runs", agg))
			p.b.mu.Unlock()
		}
		seen[agg] = true
	}
	return p.b.Publish(ctx, msgs)
}

// Relays racing on one database with runs, through random failures and
// outages, store every aggregate's events once each and in order: a hot
// aggregate beside many cold ones. A publisher that keeps runs takes them in
// one call; any other in waves.
func TestRelaysWithRunsKeepOrder(t *testing.T) {
	t.Parallel()
	for _, keeps := range []bool{true, false} {
		t.Run(fmt.Sprintf("keeps_runs=%v", keeps), func(t *testing.T) {
			t.Parallel()
			relaysWithRuns(t, keeps)
		})
	}
}

func relaysWithRuns(t *testing.T, keepsRuns bool) {
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	c := outbox.NewClient(d)
	want := map[string]int64{"hot/1": 3000}
	for i := range 40 {
		want[fmt.Sprintf("cold/%d", i)] = 25
	}
	var events []outbox.Event
	for agg, n := range want {
		typ, id, _ := cut(agg)
		for range n {
			events = append(events, outbox.Event{AggregateType: typ, AggregateID: id, Type: "t", Payload: []byte(`{}`)})
		}
	}
	rand.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	for len(events) > 0 {
		n := min(len(events), 500)
		if _, err := c.Enqueue(ctx, events[:n]...); err != nil {
			t.Fatal(err)
		}
		events = events[n:]
	}

	broker := &runBroker{rng: rand.New(rand.NewPCG(1, 2)), last: map[string]int64{}, failRate: 0.002}
	var pub outbox.Publisher = broker
	if !keepsRuns {
		pub = plainBroker{broker}
	}
	var total int64
	for _, n := range want {
		total += n
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	relays := make([]*outbox.Relay, 2)
	src := &followCounter{Driver: d}
	for i := range relays {
		relays[i] = outbox.NewRelay(src, pub, outbox.RelayConfig{
			BatchSize:    200,
			Workers:      2,
			PollInterval: 10 * time.Millisecond,
			Retry:        outbox.RetryPolicy{Base: time.Millisecond, Cap: 5 * time.Millisecond, MaxAttempts: 1000},
		})
		wg.Go(func() { _ = relays[i].Run(rctx) })
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		broker.mu.Lock()
		stored := broker.stored
		broker.mu.Unlock()
		if int64(stored) >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	wg.Wait()

	broker.mu.Lock()
	defer broker.mu.Unlock()
	for _, v := range broker.violations {
		t.Error(v)
	}
	for agg, n := range want {
		if broker.last[agg] != n {
			t.Errorf("%s: last stored sequence %d, want %d", agg, broker.last[agg], n)
		}
	}
	if broker.stored != int(total) {
		t.Errorf("stored %d events, want %d", broker.stored, total)
	}
	if keepsRuns && broker.runCalls == 0 {
		t.Error("no publish held a run: the relay sent heads only")
	}
	if src.followed.Load() == 0 {
		t.Error("no claim continued the runs of a batch in flight (ClaimParams.Follow)")
	}
	var published, retried uint64
	for _, r := range relays {
		published += r.Counters().Published
		retried += r.Counters().Retried
	}
	if published != uint64(total) {
		t.Errorf("relays counted %d published, want %d", published, total)
	}
	if retried == 0 {
		t.Error("no event was retried: the failures did not happen")
	}
	st, err := d.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.Retrying != 0 {
		t.Errorf("stats after the drain: %+v", st)
	}
}

// followCounter counts the claims that took events following the tails of
// a batch in flight.
type followCounter struct {
	*pgstore.Driver
	followed atomic.Int64
}

func (f *followCounter) Claim(ctx context.Context, p outbox.ClaimParams) (outbox.Batch, error) {
	b, err := f.Driver.Claim(ctx, p)
	if err != nil {
		return b, err
	}
	for _, r := range b.Records() {
		for _, t := range p.Follow {
			if r.AggregateType == t.AggregateType && r.AggregateID == t.AggregateID && r.Sequence == t.Sequence+1 {
				f.followed.Add(1)
			}
		}
	}
	return b, nil
}

func cut(agg string) (typ, id string, ok bool) {
	for i := range agg {
		if agg[i] == '/' {
			return agg[:i], agg[i+1:], true
		}
	}
	return agg, "", false
}

// A claim may continue the runs of a batch in flight (ClaimParams.Follow);
// when that batch fails and the continuation is given back, a claim that
// read past the given-back rows while they were held finds a gap, and takes
// its claim again rather than hand out the aggregate's events out of order.
func TestClaimFollowAndGapRetry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	var events []outbox.Event
	for range 10 {
		events = append(events, outbox.Event{AggregateType: "hot", AggregateID: "1", Type: "t", Payload: []byte(`{}`)})
	}
	if _, err := outbox.NewClient(d).Enqueue(ctx, events...); err != nil {
		t.Fatal(err)
	}
	seqs := func(b outbox.Batch) []int64 {
		var s []int64
		for _, r := range b.Records() {
			s = append(s, r.Sequence)
		}
		return s
	}
	claim := func(p outbox.ClaimParams) outbox.Batch {
		t.Helper()
		b, err := d.Claim(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := claim(outbox.ClaimParams{Limit: 4, RunLength: 4})
	if got := seqs(a); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Fatalf("first claim took %v", got)
	}
	b := claim(outbox.ClaimParams{Limit: 4, RunLength: 4, Follow: []outbox.Tail{{AggregateType: "hot", AggregateID: "1", Sequence: 4}}})
	if got := seqs(b); !slices.Equal(got, []int64{5, 6, 7, 8}) {
		t.Fatalf("the claim following #4 took %v", got)
	}
	if got := seqs(claim(outbox.ClaimParams{Limit: 4, RunLength: 4})); len(got) != 0 {
		t.Fatalf("a claim took %v of an aggregate two batches hold", got)
	}
	// a publishes #1 and fails #2 (due again at once); #3 and #4 go back.
	retry := outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "no"}
	released := outbox.Outcome{Kind: outbox.OutcomeReleased}
	if err := a.Finish(ctx, []outbox.Outcome{{Kind: outbox.OutcomePublished}, retry, released, released}); err != nil {
		t.Fatal(err)
	}
	// A claim now reads #2 … #10 and waits for b's lock on #5.
	got := make(chan outbox.Batch, 1)
	go func() {
		c, err := d.Claim(ctx, outbox.ClaimParams{Limit: 10, RunLength: 10})
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	time.Sleep(200 * time.Millisecond) // let it reach the lock; passes either way
	// b gives its events back as the relay does, once a has not published
	// the aggregate whole: as new rows, the ones the waiting claim read gone.
	if err := b.Finish(ctx, []outbox.Outcome{released, released, released, released}); err != nil {
		t.Fatal(err)
	}
	c := <-got
	if c == nil {
		return
	}
	defer func() { _ = c.Release(ctx) }()
	if s := seqs(c); !slices.Equal(s, []int64{2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("the claim after the given-back continuation took %v, want #2…#10 in order", s)
	}
}

// With SpreadStart, drivers on one outbox begin their walks at different
// aggregates, and each still takes every head once it wraps around.
func TestSpreadStart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, schema := newPool(t, 4)
	cfg := pgstore.Config{Name: schema, SpreadStart: true}
	d := migrated(t, pool, cfg)
	const aggregates = 200
	var events []outbox.Event
	for i := range aggregates {
		events = append(events, outbox.Event{AggregateType: "a", AggregateID: fmt.Sprintf("%04d", i), Type: "t", Payload: []byte(`{}`)})
	}
	if _, err := outbox.NewClient(d).Enqueue(ctx, events...); err != nil {
		t.Fatal(err)
	}
	starts := map[string]bool{}
	for range 5 {
		fresh := migrated(t, pool, cfg)
		b, err := fresh.Claim(ctx, outbox.ClaimParams{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records()) != 1 {
			t.Fatalf("a claim took %d events", len(b.Records()))
		}
		starts[b.Records()[0].AggregateID] = true
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(starts) < 2 {
		t.Errorf("five drivers all began at %v", starts)
	}
	b, err := migrated(t, pool, cfg).Claim(ctx, outbox.ClaimParams{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Release(ctx) }()
	if got := len(b.Records()); got != aggregates {
		t.Errorf("a claim from a random start took %d heads, want all %d", got, aggregates)
	}
}
