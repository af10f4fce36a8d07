package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/outbox"
)

// producer is a client that sends only when flushed (kgo.ManualFlushing),
// used by one Publish call at a time (see Publisher.acquire).
type producer struct {
	cl  *kgo.Client
	gen uint64 // the publisher's topic generation when it was made

	mu  sync.Mutex
	cur *outcomes // of the call producing on it
}

// OnProduceRecordPartitioned implements kgo.HookProduceRecordPartitioned:
// the record is buffered in its partition, behind the call's earlier
// records of that partition.
func (pr *producer) OnProduceRecordPartitioned(r *kgo.Record, _ int32) {
	pr.mu.Lock()
	o := pr.cur
	pr.mu.Unlock()
	if o != nil {
		if i, ok := o.index[r]; ok {
			o.buffered(i)
		}
	}
}

func (pr *producer) use(o *outcomes) {
	pr.mu.Lock()
	pr.cur = o
	pr.mu.Unlock()
}

// Record states before the flush.
const (
	unsettled   uint8 = iota // neither buffered nor failed yet
	inBuffer                 // buffered in its partition
	failedEarly              // failed before anything was sent
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

	// Before the flush: where each record is, and how many are not
	// settled (buffered or failed) yet. index is each record's index,
	// written before the first is produced.
	index     map[*kgo.Record]int
	state     []uint8
	unsettled int
	flushed   bool
	settled   chan struct{} // closed when unsettled reaches 0
}

func newOutcomes(n int) *outcomes {
	o := &outcomes{
		errs: make([]error, n), done: make([]bool, n), pending: n, all: make(chan struct{}),
		state: make([]uint8, n), unsettled: n, settled: make(chan struct{}),
	}
	if n == 0 {
		close(o.all)
		close(o.settled)
	}
	return o
}

func (o *outcomes) settle(i int, to uint8) {
	if i < 0 || i >= len(o.state) || o.flushed {
		return
	}
	if o.state[i] == unsettled {
		if o.unsettled--; o.unsettled == 0 {
			close(o.settled)
		}
	}
	if o.state[i] != failedEarly {
		o.state[i] = to
	}
}

func (o *outcomes) buffered(i int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.settle(i, inBuffer)
}

func (o *outcomes) set(i int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.settle(i, failedEarly)
	}
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

// flush ends the settling: it reports the records that failed before it
// and where each record was, and from now on failures are the send's.
func (o *outcomes) flush() (early []int, state []uint8) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushed = true
	for i, s := range o.state {
		if s == failedEarly {
			early = append(early, i)
		}
	}
	return early, o.state
}

// produce hands msgs to pr and waits for their outcomes. done[i] tells
// whether errs[i] is the client's final outcome (nil when acked);
// otherwise the wait was given up (ctx ended, the brokers became
// unreachable) and errs[i] says so, and clean is false: the client may
// still hold records of the call, and must not be used again.
//
// The client sends nothing until every record of the call is buffered in
// its partition or has failed. A record that failed before the flush (too
// large, say) failed alone: the client would send its aggregate's later
// records after it. So when one did and later records of its aggregate
// are buffered, everything buffered is aborted unsent and produced again
// without them; they fail with outbox.ErrRunBroken. Once flushed, a
// failure of one of the partition's batches fails every later record the
// client holds for that partition (franz-go's failAllRecords), and the
// broker refuses the later batches already sent (their sequence numbers
// no longer follow on), so none of the aggregate's later records is
// stored; runs.go reports them.
func (p *Publisher) produce(ctx context.Context, pr *producer, msgs []outbox.Message) (errs []error, done []bool, clean bool) {
	errs, done = make([]error, len(msgs)), make([]bool, len(msgs))
	idx := make([]int, len(msgs)) // of the messages produced this round
	for i := range idx {
		idx[i] = i
	}
	for len(idx) > 0 {
		sub := msgs
		if len(idx) < len(msgs) {
			sub = make([]outbox.Message, len(idx))
			for j, i := range idx {
				sub[j] = msgs[i]
			}
		}
		o, retry, ok := p.produceRound(ctx, pr, sub)
		for j, i := range idx {
			errs[i], done[i] = o.errs[j], o.done[j]
		}
		if !ok {
			return errs, done, false
		}
		next := idx[:0:0]
		for _, j := range retry {
			next = append(next, idx[j])
		}
		idx = next
	}
	return errs, done, true
}

// produceRound produces msgs on pr and, unless a record failed before the
// flush with later records of its aggregate buffered, flushes and waits for
// every outcome. In that case it aborts every buffered record, breaks the
// runs and returns the indexes of msgs to produce again. ok is false when
// the wait was given up.
func (p *Publisher) produceRound(ctx context.Context, pr *producer, msgs []outbox.Message) (o *outcomes, retry []int, ok bool) {
	o = newOutcomes(len(msgs))
	recs := newRecords(msgs, p.cfg.Topic)
	o.index = make(map[*kgo.Record]int, len(recs))
	for i := range recs {
		o.index[&recs[i]] = i
	}
	pr.use(o)
	defer pr.use(nil)
	for i := range recs {
		pr.cl.Produce(context.Background(), &recs[i], func(_ *kgo.Record, err error) { o.set(i, err) })
	}
	if !p.await(ctx, pr.cl, o, o.settled, nil) {
		return o, nil, false
	}
	if early, state := o.flush(); len(early) > 0 {
		if broken := brokenBehind(msgs, early, state); len(broken) > 0 {
			return p.abort(ctx, pr, msgs, o, early, broken)
		}
	}
	fctx, cancel := context.WithCancel(context.Background())
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		_ = pr.cl.Flush(fctx) // ends when every record is done, or cancel
	}()
	ok = p.await(ctx, pr.cl, o, o.all, func() { kick(pr.cl) })
	cancel()
	<-flushed
	return o, nil, ok
}

// kickEvery is how often a flushing client is told again to drain.
const kickEvery = 20 * time.Millisecond

// kick tells every partition of cl to drain, as the start of a Flush does.
// A Flush that starts while the client is still storing a new topic's
// partitions (it buffers the records that waited for them, which calls the
// hook that ends the settling, before it stores them) finds none to wake,
// and a client that flushes manually drains nothing by itself: so the
// flush is kicked again while records are outstanding.
func kick(cl *kgo.Client) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_ = cl.Flush(done) // wakes the partitions, returns at once
}

// brokenBehind returns, for the records of early (failed before the flush),
// the later records of their aggregates that are buffered.
func brokenBehind(msgs []outbox.Message, early []int, state []uint8) map[int]int {
	failedAt := make(map[runKey]int, len(early))
	for _, i := range early {
		if _, ok := failedAt[keyOf(&msgs[i])]; !ok {
			failedAt[keyOf(&msgs[i])] = i
		}
	}
	broken := map[int]int{} // index → the index of its failed predecessor
	for i := range msgs {
		if f, ok := failedAt[keyOf(&msgs[i])]; ok && i > f && state[i] == inBuffer {
			broken[i] = f
		}
	}
	return broken
}

// abort fails every buffered record of the round unsent (nothing has been
// flushed), sets the results of the records that failed early and of the
// records behind them, and returns the rest to produce again.
func (p *Publisher) abort(ctx context.Context, pr *producer, msgs []outbox.Message, o *outcomes, early []int, broken map[int]int) (*outcomes, []int, bool) {
	if err := pr.cl.AbortBufferedRecords(ctx); err != nil {
		o.abandon(ctxError(err))
		return o, nil, false
	}
	<-o.all // every promise has run: Abort waits for the buffer to empty
	failed := make(map[int]bool, len(early))
	for _, i := range early {
		failed[i] = true
	}
	var retry []int
	for i := range msgs {
		switch f, isBroken := broken[i]; {
		case failed[i]: // keeps its own error
		case isBroken:
			o.errs[i] = runBroken(&msgs[f], o.errs[f])
		default:
			retry = append(retry, i)
			o.errs[i], o.done[i] = nil, false
		}
	}
	return o, retry, true
}

// await waits until until is closed, giving up (and abandoning o's
// outstanding records) when ctx ends or no broker answers; it calls tick,
// if any, every kickEvery meanwhile.
func (p *Publisher) await(ctx context.Context, cl *kgo.Client, o *outcomes, until <-chan struct{}, tick func()) bool {
	failed := p.health.failed()
	var ticks <-chan time.Time
	if tick != nil {
		t := time.NewTicker(kickEvery)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-until:
			return true
		case <-ticks:
			tick()
		case <-ctx.Done():
			o.abandon(ctxError(ctx.Err()))
			return false
		case <-failed:
			if err := p.health.check(ctx, cl); err != nil {
				o.abandon(err)
				return false
			}
			failed = p.health.failed()
		}
	}
}

// runBroken is the error of a record not sent, or refused, because the
// earlier record first of its aggregate failed with cause.
func runBroken(first *outbox.Message, cause error) error {
	return fmt.Errorf("%w: event %s (sequence %d) failed: %v", outbox.ErrRunBroken, first.ID, first.Sequence, cause) //nolint:errorlint // the predecessor's error is not this record's
}
