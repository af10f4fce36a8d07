package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/outbox"
)

// outcomes collects the promises of one batch. The promises fill it in
// without waking the waiting Publish for each record (one wake-up per batch,
// when the last arrives); a promise that fires after Publish gave up
// leaves it alone.
type outcomes struct {
	mu        sync.Mutex
	errs      []error
	done      []bool
	pending   int
	abandoned bool
	all       chan struct{} // closed when the last outcome is in
}

func newOutcomes(n int) *outcomes {
	return &outcomes{errs: make([]error, n), done: make([]bool, n), pending: n, all: make(chan struct{})}
}

func (o *outcomes) set(i int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.abandoned {
		o.errs[i], o.done[i] = err, true
	}
	if o.pending--; o.pending == 0 {
		close(o.all)
	}
}

// abandon stops taking outcomes and fails with err every record whose
// outcome has not arrived.
func (o *outcomes) abandon(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.abandoned = true
	for i, done := range o.done {
		if !done {
			o.errs[i] = err
		}
	}
}

// produce hands msgs to cl and waits for their outcomes. done[i] tells
// whether errs[i] is the broker's outcome (nil when acked); otherwise the
// wait was given up (ctx ended, the brokers became unreachable) and errs[i]
// says so.
func (p *Publisher) produce(ctx context.Context, cl *kgo.Client, msgs []outbox.Message) (errs []error, done []bool) {
	o := newOutcomes(len(msgs))
	// Records still unsent when the wait ends are dropped by the client
	// (it never drops one it has sent before the broker answers).
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := newRecords(msgs, p.cfg.Topic)
	for i := range recs {
		cl.Produce(rctx, &recs[i], func(_ *kgo.Record, err error) { o.set(i, err) })
	}
	failed := p.health.failed()
	for {
		select {
		case <-o.all:
			return o.errs, o.done // every write to them happened before all closed
		case <-ctx.Done():
			o.abandon(ctxError(ctx.Err()))
			return o.errs, o.done
		case <-failed:
			if err := p.health.check(ctx, cl); err != nil {
				o.abandon(err)
				return o.errs, o.done
			}
			failed = p.health.failed()
		}
	}
}
