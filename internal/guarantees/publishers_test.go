package guarantees_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/heraldhq/herald/outbox"
)

// faultyPublisher fails every message of a poisoned aggregate or event id and
// hands the rest to a real publisher.
type faultyPublisher struct {
	outbox.Publisher
	mu       sync.Mutex
	poisoned map[string]error
}

func newFaulty(inner outbox.Publisher) *faultyPublisher {
	return &faultyPublisher{Publisher: inner, poisoned: map[string]error{}}
}

func (f *faultyPublisher) poison(agg string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.poisoned[agg] = err
}

func (f *faultyPublisher) heal(agg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.poisoned, agg)
}

func (f *faultyPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := make([]error, len(msgs))
	var pass []outbox.Message
	var index []int
	f.mu.Lock()
	for i, m := range msgs {
		if err, bad := f.poisoned[m.AggregateID]; bad {
			errs[i] = err
			continue
		}
		if err, bad := f.poisoned[m.ID.String()]; bad {
			errs[i] = err
			continue
		}
		pass = append(pass, m)
		index = append(index, i)
	}
	f.mu.Unlock()
	if len(pass) > 0 {
		for j, err := range f.Publisher.Publish(ctx, pass) {
			errs[index[j]] = err
		}
	}
	return errs
}

// orderGuard checks the relay's side of G3 at the moment it happens rather
// than inferring it from the broker. Every relay of a test shares it: it
// wraps each relay's store and their common publisher, and fails the test if
// an event is handed to the publisher while an earlier event of its
// aggregate is still in flight, that is, claimed and not yet finished with
// its deletion committed — except right behind it in the same call (a run,
// for a publisher that keeps runs).
type orderGuard struct {
	outbox.Publisher
	t        *testing.T
	mu       sync.Mutex
	done     map[string]int64 // aggregate → last sequence whose publication committed
	inflight map[string]bool
	acked    map[string]int64 // aggregate → last sequence acknowledged by a batch not yet finished
	runs     int
}

func newOrderGuard(t *testing.T, inner outbox.Publisher) *orderGuard {
	return &orderGuard{Publisher: inner, t: t, done: map[string]int64{}, inflight: map[string]bool{}, acked: map[string]int64{}}
}

func (g *orderGuard) Publish(ctx context.Context, msgs []outbox.Message) []error {
	g.mu.Lock()
	next := map[string]int64{} // aggregate → the sequence its run in this call continues with
	for _, m := range msgs {
		want, inRun := next[m.AggregateID]
		if !inRun {
			last, ok := g.acked[m.AggregateID]
			switch {
			case ok:
				// A later wave of the batch that holds the aggregate: its
				// predecessor was acknowledged in an earlier call.
			case g.inflight[m.AggregateID]:
				g.t.Errorf("aggregate %s: sequence %d handed over while another event is in flight", m.AggregateID, m.Sequence)
				last = g.done[m.AggregateID]
			default:
				last = g.done[m.AggregateID]
			}
			want = last + 1
		} else {
			g.runs++
		}
		if m.Sequence != want {
			g.t.Errorf("aggregate %s: sequence %d handed over, want %d", m.AggregateID, m.Sequence, want)
		}
		next[m.AggregateID] = m.Sequence + 1
		g.inflight[m.AggregateID] = true
	}
	g.mu.Unlock()
	errs := g.Publisher.Publish(ctx, msgs)
	g.mu.Lock()
	for i, m := range msgs {
		if i < len(errs) && errs[i] == nil {
			g.acked[m.AggregateID] = m.Sequence
		}
	}
	g.mu.Unlock()
	return errs
}

// KeepsRuns passes on the wrapped publisher's answer, so that a relay gives
// runs to a guarded publisher that keeps them.
func (g *orderGuard) KeepsRuns() bool {
	rp, ok := g.Publisher.(outbox.RunPublisher)
	return ok && rp.KeepsRuns()
}

// runEvents is how many events were handed over behind an earlier one of
// their aggregate in the same call.
func (g *orderGuard) runEvents() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs
}

// store wraps s so that the guard learns when a batch has ended.
func (g *orderGuard) store(s outbox.Store) outbox.Store { return guardedStore{Store: s, g: g} }

type guardedStore struct {
	outbox.Store
	g *orderGuard
}

func (s guardedStore) Claim(ctx context.Context, p outbox.ClaimParams) (outbox.Batch, error) {
	b, err := s.Store.Claim(ctx, p)
	if err != nil {
		return nil, err
	}
	return guardedBatch{Batch: b, g: s.g}, nil
}

type guardedBatch struct {
	outbox.Batch
	g *orderGuard
}

// Finish records the batch as done just before the driver commits it: a
// successor can legitimately be claimed from the commit on, which the guard
// cannot observe from outside. A successor claimed any earlier (while the
// batch was being published) is caught. If the commit fails, no successor can
// have been claimed, and the previous state is restored.
func (b guardedBatch) Finish(ctx context.Context, outcomes []outbox.Outcome) error {
	b.g.mu.Lock()
	before := map[string]int64{}
	for i, r := range b.Records() {
		before[r.AggregateID] = b.g.done[r.AggregateID]
		delete(b.g.inflight, r.AggregateID)
		delete(b.g.acked, r.AggregateID)
		if outcomes[i].Kind == outbox.OutcomePublished {
			b.g.done[r.AggregateID] = r.Sequence
		}
	}
	b.g.mu.Unlock()
	err := b.Batch.Finish(ctx, outcomes)
	if err != nil {
		b.g.mu.Lock()
		maps.Copy(b.g.done, before)
		b.g.mu.Unlock()
	}
	return err
}

// Release clears the batch's events from flight just before the driver
// gives them back: from then on another batch may claim them.
func (b guardedBatch) Release(ctx context.Context) error {
	b.g.mu.Lock()
	for _, r := range b.Records() {
		delete(b.g.inflight, r.AggregateID)
		delete(b.g.acked, r.AggregateID)
	}
	b.g.mu.Unlock()
	return b.Batch.Release(ctx)
}

// ackThenFail publishes a batch for real and then reports it failed, the
// way a relay that crashed after the broker's ack but before its commit
// would see it: the next attempt publishes the same events again.
type ackThenFail struct {
	outbox.Publisher
	mu    sync.Mutex
	times int
}

func (a *ackThenFail) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := a.Publisher.Publish(ctx, msgs)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.times > 0 {
		a.times--
		return outbox.AllFailed(len(msgs), errors.New("lost the acks"))
	}
	return errs
}

var errBroker = fmt.Errorf("broker refused it")
