package guarantees_test

import (
	"context"
	"errors"
	"fmt"
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

// orderGuard sits in front of a real publisher shared by every relay of a
// test and fails the test if an event is handed over while an earlier event
// of its aggregate is in flight or not yet acknowledged: the relay's side of
// G3, checked at the moment it happens rather than inferred from the broker.
type orderGuard struct {
	outbox.Publisher
	t        *testing.T
	mu       sync.Mutex
	acked    map[string]int64 // aggregate → last acknowledged sequence
	inflight map[string]bool
}

func newOrderGuard(t *testing.T, inner outbox.Publisher) *orderGuard {
	return &orderGuard{Publisher: inner, t: t, acked: map[string]int64{}, inflight: map[string]bool{}}
}

func (g *orderGuard) Publish(ctx context.Context, msgs []outbox.Message) []error {
	g.mu.Lock()
	for _, m := range msgs {
		if g.inflight[m.AggregateID] {
			g.t.Errorf("aggregate %s: sequence %d handed over while another event is in flight", m.AggregateID, m.Sequence)
		}
		if want := g.acked[m.AggregateID] + 1; m.Sequence != want {
			g.t.Errorf("aggregate %s: sequence %d handed over, want %d", m.AggregateID, m.Sequence, want)
		}
		g.inflight[m.AggregateID] = true
	}
	g.mu.Unlock()
	errs := g.Publisher.Publish(ctx, msgs)
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, m := range msgs {
		delete(g.inflight, m.AggregateID)
		if errs[i] == nil {
			g.acked[m.AggregateID] = m.Sequence
		}
	}
	return errs
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
