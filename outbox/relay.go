package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// RelayConfig tunes a Relay. The zero value is usable: zero fields take the
// defaults in defaults.go (see WithDefaults).
type RelayConfig struct {
	BatchSize      int           // events claimed per batch; default DefaultBatchSize
	Workers        int           // concurrent claim/publish loops; default DefaultWorkers
	PollInterval   time.Duration // fallback poll when no wake-up arrives; default DefaultPollInterval
	PollOnly       bool          // don't LISTEN (for poolers that break it); poll only
	PublishTimeout time.Duration // longest wait for a batch's acks; default DefaultPublishTimeout
	Retry          RetryPolicy
	// MoveOnPastDeadLetters lets an aggregate's later events flow while an
	// earlier one is dead-lettered, instead of parking them until an
	// operator replays or discards it.
	MoveOnPastDeadLetters bool
	Source                string // CloudEvents source; default DefaultSource
	Logger                *slog.Logger
	// OnOutcome, when set, is called for each event of a batch once the
	// batch's outcomes are committed (for metrics by event type, say). It
	// runs on a relay worker and must not block.
	OnOutcome func(r *Record, o Outcome)
	// Tracer, when set, records a span for each batch's publish ("outbox
	// publish", kind producer), linked to the span of each event's writer
	// (the span context of the event's traceparent header). Nil means no
	// tracing; the relay never reads OpenTelemetry's global provider.
	Tracer trace.Tracer
}

// RelayCounters count what a relay did since it started.
type RelayCounters struct {
	Published    uint64
	Retried      uint64
	DeadLettered uint64
	Batches      uint64
	// Outages counts the batches given back untouched because the broker
	// was unavailable (see Run).
	Outages uint64
	// BrokerDown is true from a batch that found the broker unavailable
	// until one that it acknowledged.
	BrokerDown bool
}

// Relay moves events from the outbox to a Publisher. Several relays, in one
// process or many, may run against one database: each claims distinct
// aggregates' head events, so per-aggregate order holds (see docs/DESIGN.md).
type Relay struct {
	src Source
	pub Publisher
	cfg RelayConfig

	mu    sync.Mutex
	wakes []chan struct{}

	published, retried, deadLettered, batches atomic.Uint64
	outages                                   atomic.Uint64
	brokerDown                                atomic.Bool
	workerLog                                 workerLog // for Workers
}

// NewRelay returns a relay that publishes the events of src (a driver) to
// pub. A nil cfg.Logger discards the relay's log.
func NewRelay(src Source, pub Publisher, cfg RelayConfig) *Relay {
	cfg = cfg.WithDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{src: src, pub: pub, cfg: cfg}
}

// Counters returns what the relay has done so far.
func (r *Relay) Counters() RelayCounters {
	return RelayCounters{
		Published:    r.published.Load(),
		Retried:      r.retried.Load(),
		DeadLettered: r.deadLettered.Load(),
		Batches:      r.batches.Load(),
		Outages:      r.outages.Load(),
		BrokerDown:   r.brokerDown.Load(),
	}
}

// Wake makes idle workers look for events now. Enqueuers in the same process
// need not call it when the driver delivers wake-ups itself (both drivers do).
func (r *Relay) Wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Run relays events until ctx is done. A batch in flight when ctx ends is
// finished (its acks awaited and recorded) before Run returns, so a graceful
// stop neither loses nor duplicates events. Run returns nil after a graceful
// stop.
//
// A broker outage is not a failure of the events: when every message of a
// batch fails with ErrBrokerUnavailable (the publisher's word that the broker
// cannot be reached), or the publish deadline passes with none
// acknowledged, the batch is given back
// untouched, no attempt is charged, and the worker probes again with
// backoff. Otherwise an outage longer than the retry policy's attempts
// would dead-letter the head event of every aggregate waiting. The outage is
// logged when it begins and when it ends, not for every probe.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if !r.cfg.PollOnly {
		wg.Go(func() { r.listen(ctx) })
	}
	wakes := make([]chan struct{}, r.cfg.Workers)
	for i := range wakes {
		wakes[i] = make(chan struct{}, 1)
	}
	r.mu.Lock()
	r.wakes = append(r.wakes, wakes...)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.wakes = slices.DeleteFunc(r.wakes, func(w chan struct{}) bool { return slices.Contains(wakes, w) })
		r.mu.Unlock()
	}()
	for i, wake := range wakes {
		wg.Go(func() { r.work(ctx, i, wake) })
	}
	wg.Wait()
	return nil
}

// listen keeps a wake-up subscription open, reconnecting after failures.
func (r *Relay) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.src.Listen(ctx, r.Wake)
		if ctx.Err() != nil {
			return
		}
		r.cfg.Logger.Warn("relay: wake-up listener failed; polling until it reconnects", "err", err)
		sleep(ctx, r.cfg.PollInterval)
	}
}

// work is one worker: it claims a batch, publishes it and records the
// outcomes, and claims the next batch while it publishes the current one, so
// that the database's claim and the broker's acks overlap. The next batch
// holds no head of an aggregate the current one holds (a claim skips
// aggregates another batch holds); it may continue the current batch's runs
// (ClaimParams.Follow), and those events go out only if the current batch
// published every event of their aggregate, else they are given back. So
// order is kept as with two workers, and one hot aggregate drains without
// waiting for a claim between batches.
func (r *Relay) work(ctx context.Context, worker int, wake <-chan struct{}) {
	log := r.cfg.Logger.With("worker", worker)
	var next <-chan claimed // the claim running ahead, if any
	defer func() {
		if next != nil {
			r.giveBack(ctx, <-next)
		}
	}()
	failures := 0
	var stopped map[aggregateOf]bool // aggregates the last batch did not publish whole
	for ctx.Err() == nil {
		var c claimed
		ahead := next != nil
		if ahead {
			c, next = <-next, nil
			if c.batch != nil && time.Since(c.at) > r.cfg.PublishTimeout {
				// It waited behind a slow batch: take a fresh one rather than
				// hold a claim near the database's claim timeout.
				r.giveBack(ctx, c)
				continue
			}
		} else {
			c = r.claim(ctx, nil)
		}
		var n int
		err := c.err
		if err == nil {
			records, held := c.batch.Records(), c.held(stopped)
			if len(records) > 0 && r.claimsAhead() {
				next = r.claimAhead(ctx, r.follow(records, held))
			}
			n, stopped, err = r.deliver(ctx, c.batch, held)
		}
		r.workerLog.claimed(worker, n, err, time.Now())
		if err != nil && next != nil {
			r.giveBack(ctx, <-next)
			next = nil
		}
		switch {
		case errors.Is(err, errOutage) && ctx.Err() == nil:
			failures++
			sleep(ctx, min(r.cfg.Retry.Delay(failures), 10*r.cfg.PollInterval))
		case err != nil && ctx.Err() == nil:
			failures++
			delay := r.cfg.Retry.Delay(failures)
			log.Error("relay: batch failed", "err", err, "retry_in", delay)
			sleep(ctx, min(delay, 10*r.cfg.PollInterval))
		case err != nil:
			return
		case n > 0:
			failures = 0 // more may be waiting: the next claim is under way
		case ahead:
			// Claimed while the batch before held its aggregates (one hot
			// aggregate, say): look again now that it is done.
			failures = 0
		default:
			failures = 0
			timer := time.NewTimer(r.cfg.PollInterval)
			select {
			case <-ctx.Done():
			case <-wake:
			case <-timer.C:
			}
			timer.Stop()
		}
	}
}

// claimed is the result of one claim.
type claimed struct {
	batch  Batch
	err    error
	at     time.Time
	follow map[aggregateOf]bool // the aggregates whose runs it may continue
}

// held returns the aggregates whose events in c must go back unsent:
// those it continues from a batch that did not publish them all (stopped).
func (c claimed) held(stopped map[aggregateOf]bool) map[aggregateOf]bool {
	var held map[aggregateOf]bool
	for k := range c.follow {
		if stopped[k] {
			if held == nil {
				held = map[aggregateOf]bool{}
			}
			held[k] = true
		}
	}
	return held
}

// follow returns the tails of a batch whose runs the next claim may
// continue: a full batch's (its runs the limit may have cut short; a batch
// with room left took every run to its natural end), but not those of held
// aggregates, which go back unsent.
func (r *Relay) follow(records []Record, held map[aggregateOf]bool) []Tail {
	if len(records) < r.cfg.BatchSize {
		return nil
	}
	last := make(map[aggregateOf]int, len(records))
	var tails []Tail
	for i := range records {
		k := aggregateOf{records[i].AggregateType, records[i].AggregateID}
		if held[k] {
			continue
		}
		if j, ok := last[k]; ok {
			tails[j].Sequence = max(tails[j].Sequence, records[i].Sequence)
			continue
		}
		last[k] = len(tails)
		tails = append(tails, Tail{AggregateType: k.typ, AggregateID: k.id, Sequence: records[i].Sequence})
	}
	return tails
}

// claim takes one batch: heads, the runs that follow them, and what
// follows the tails of the batch in flight.
func (r *Relay) claim(ctx context.Context, follow []Tail) claimed {
	// Runs: a RunPublisher takes a run in one call, any other publisher in
	// waves (see publish), both cheaper than a claim per event — but not
	// from a source whose claim holds every writer back (SQLite): a run
	// lengthens the batch, and the application's writes wait for it (a
	// lifecycle workload on SQLite ran at a quarter of its rate).
	p := ClaimParams{Limit: r.cfg.BatchSize, MoveOnPastDeadLetters: r.cfg.MoveOnPastDeadLetters, Follow: follow}
	if r.claimsAhead() {
		p.RunLength = r.cfg.BatchSize
	}
	b, err := r.src.Claim(ctx, p)
	if err != nil {
		return claimed{err: fmt.Errorf("claim: %w", err)}
	}
	c := claimed{batch: b, at: time.Now()}
	if len(follow) > 0 {
		c.follow = make(map[aggregateOf]bool, len(follow))
		for _, t := range follow {
			c.follow[aggregateOf{t.AggregateType, t.AggregateID}] = true
		}
	}
	return c
}

// claimAhead starts the next claim and returns where its result will be.
func (r *Relay) claimAhead(ctx context.Context, follow []Tail) <-chan claimed {
	ch := make(chan claimed, 1)
	go func() { ch <- r.claim(ctx, follow) }()
	return ch
}

// giveBack releases a batch claimed ahead that will not be published.
func (r *Relay) giveBack(ctx context.Context, c claimed) {
	if c.batch == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.PublishTimeout)
	defer cancel()
	if err := c.batch.Release(rctx); err != nil {
		r.cfg.Logger.Warn("relay: release of a batch claimed ahead failed; its claim lapses", "err", err)
	}
}

// SerialClaims is implemented by a Source whose open claim holds a lock
// that every other writer waits for (SQLite's single writer). The relay
// then claims a batch only once the one before has ended: a claim made
// ahead would only queue for that lock, first in line, and keep the
// application's writers waiting behind the relay.
type SerialClaims interface {
	ClaimsSerially() bool
}

// claimsAhead reports whether a worker claims its next batch while it
// publishes the current one.
func (r *Relay) claimsAhead() bool {
	s, ok := r.src.(SerialClaims)
	return !ok || !s.ClaimsSerially()
}

// keepsRuns reports whether the publisher may be given runs now.
func (r *Relay) keepsRuns() bool { return KeepsRuns(r.pub) }

// deliver publishes a claimed batch and records the outcomes; the events
// of held aggregates go back unsent. It returns how many events the batch
// held and the aggregates whose events it did not all publish.
func (r *Relay) deliver(ctx context.Context, batch Batch, held map[aggregateOf]bool) (int, map[aggregateOf]bool, error) {
	// From here on the batch is finished even if ctx ends: stopping must not
	// abandon acks that the broker has already given.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*r.cfg.PublishTimeout)
	defer cancel()

	records := batch.Records()
	if len(records) == 0 {
		return 0, nil, batch.Release(bctx)
	}
	outcomes, outage := r.publish(bctx, records, held)
	if outage != nil {
		if err := batch.Release(bctx); err != nil {
			return 0, nil, fmt.Errorf("release after a broker outage: %w", err)
		}
		r.brokerUnavailable(outage, len(records))
		return 0, nil, errOutage
	}
	r.brokerAvailable()
	if err := batch.Finish(bctx, outcomes); err != nil {
		releaseErr := batch.Release(bctx)
		return 0, nil, errors.Join(fmt.Errorf("finish: %w", err), releaseErr)
	}
	r.count(outcomes)
	r.logFailures(records, outcomes)
	var stopped map[aggregateOf]bool
	for i := range records {
		if outcomes[i].Kind == OutcomePublished {
			continue
		}
		if stopped == nil {
			stopped = map[aggregateOf]bool{}
		}
		stopped[aggregateOf{records[i].AggregateType, records[i].AggregateID}] = true
	}
	if r.cfg.OnOutcome != nil {
		for i := range records {
			r.cfg.OnOutcome(&records[i], outcomes[i])
		}
	}
	return len(records), stopped, nil
}

// publish sends records and returns each one's outcome, or, when the
// results show the broker itself failing, the error that says so and no
// outcomes. A batch may hold runs (several events of one aggregate, in
// sequence order): a RunPublisher takes them in one call; any other
// publisher gets them in waves, one event of each aggregate per call, each
// wave sent once the one before it is acknowledged. In both, the events
// after one that failed are given back unsent.
func (r *Relay) publish(ctx context.Context, records []Record, held map[aggregateOf]bool) (_ []Outcome, outage error) {
	ctx, span := r.startPublishSpan(ctx, records)
	outcomes := make([]Outcome, len(records))
	defer func() { endPublishSpan(span, outcomes, outage) }()
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	runs := newRunBreaks(records)
	pending := make([]int, 0, len(records))
	for i := range records {
		if held[aggregateOf{records[i].AggregateType, records[i].AggregateID}] {
			outcomes[i] = Outcome{Kind: OutcomeReleased}
			continue
		}
		pending = append(pending, i)
	}
	if len(pending) == 0 {
		return outcomes, nil
	}
	if runs == nil || r.keepsRuns() {
		return outcomes, r.publishWave(pctx, records, pending, outcomes, runs)
	}
	for first := true; len(pending) > 0; first = false {
		var wave []int
		wave, pending = nextWave(records, pending, runs, outcomes)
		if err := r.publishWave(pctx, records, wave, outcomes, runs); err != nil {
			if first {
				return nil, err
			}
			// The broker went away after earlier waves: what is left goes
			// back unsent, and the next batch meets the outage.
			for _, i := range append(wave, pending...) {
				outcomes[i] = Outcome{Kind: OutcomeReleased}
			}
			return outcomes, nil
		}
	}
	return outcomes, nil
}

// nextWave splits pending (indexes of records, in batch order) into the
// next wave, the first pending event of each aggregate whose run has not
// broken, and the rest; events of broken runs are released.
func nextWave(records []Record, pending []int, runs runBreaks, outcomes []Outcome) (wave, rest []int) {
	inWave := make(map[aggregateOf]bool, len(pending))
	for _, i := range pending {
		k := aggregateOf{records[i].AggregateType, records[i].AggregateID}
		switch {
		case runs[k]:
			outcomes[i] = Outcome{Kind: OutcomeReleased}
		case inWave[k]:
			rest = append(rest, i)
		default:
			inWave[k] = true
			wave = append(wave, i)
		}
	}
	return wave, rest
}

// publishWave publishes records[idx] in one call and sets their outcomes.
// When the results show the broker itself failing it sets none and returns
// the error that says so.
func (r *Relay) publishWave(ctx context.Context, records []Record, idx []int, outcomes []Outcome, runs runBreaks) error {
	msgs := make([]Message, 0, len(idx))
	index := make([]int, 0, len(idx)) // msgs[j] is records[index[j]]
	for _, i := range idx {
		if runs.broken(&records[i]) {
			outcomes[i] = Outcome{Kind: OutcomeReleased}
			continue
		}
		body, err := EncodeCloudEvent(&records[i], r.cfg.Source)
		if err != nil {
			outcomes[i] = r.cfg.Retry.outcome(Permanent(err), records[i].Attempts)
			runs.breakAt(&records[i])
			continue
		}
		msgs = append(msgs, Message{Record: records[i], Body: body})
		index = append(index, i)
	}
	if len(msgs) == 0 {
		return nil
	}
	errs := r.pub.Publish(ctx, msgs)
	// A publisher that reports fewer results than messages has not
	// confirmed the rest: count them as failed, never as published.
	for len(errs) < len(msgs) {
		errs = append(errs, errNoResult)
	}
	if len(msgs) == len(idx) && isOutage(errs[:len(msgs)], errors.Is(ctx.Err(), context.DeadlineExceeded)) {
		return firstError(errs)
	}
	for j, i := range index {
		rec := &records[i]
		switch err := errs[j]; {
		case runs.broken(rec) && err == nil:
			// A RunPublisher that stored an event after its predecessor
			// failed broke its contract; the event is out, so keep it.
			r.cfg.Logger.Error("relay: the publisher stored an event after an earlier one of its aggregate failed; consumers may see them out of order",
				"event_id", rec.ID, "aggregate_type", rec.AggregateType, "aggregate_id", rec.AggregateID, "sequence", rec.Sequence)
			outcomes[i] = Outcome{Kind: OutcomePublished}
		case runs.broken(rec) || errors.Is(err, ErrRunBroken):
			outcomes[i] = Outcome{Kind: OutcomeReleased}
			runs.breakAt(rec)
		default:
			outcomes[i] = r.cfg.Retry.outcome(err, rec.Attempts)
			if err != nil {
				runs.breakAt(rec)
			}
		}
	}
	return nil
}

// firstError returns the first error of errs that is not ErrRunBroken.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrRunBroken) {
			return err
		}
	}
	return errs[0]
}

// runBreaks remembers the aggregates of a batch with runs whose run has
// broken: an event failed, so the ones after it must not go out. It is nil,
// and costs nothing, for a batch of heads only.
type runBreaks map[aggregateOf]bool

type aggregateOf struct{ typ, id string }

// newRunBreaks returns a runBreaks for records if they hold a run.
func newRunBreaks(records []Record) runBreaks {
	seen := make(map[aggregateOf]struct{}, len(records))
	for i := range records {
		k := aggregateOf{records[i].AggregateType, records[i].AggregateID}
		if _, dup := seen[k]; dup {
			return runBreaks{}
		}
		seen[k] = struct{}{}
	}
	return nil
}

func (b runBreaks) broken(r *Record) bool {
	return b != nil && b[aggregateOf{r.AggregateType, r.AggregateID}]
}

func (b runBreaks) breakAt(r *Record) {
	if b != nil {
		b[aggregateOf{r.AggregateType, r.AggregateID}] = true
	}
}

// errOutage is deliver's report of a batch given back in an outage.
var errOutage = errors.New("broker outage")

// brokerUnavailable records an outage; the first batch of one logs it.
func (r *Relay) brokerUnavailable(err error, events int) {
	r.outages.Add(1)
	if r.brokerDown.CompareAndSwap(false, true) {
		r.cfg.Logger.Error("relay: the broker is unavailable; events wait in the outbox and no attempt is charged until it is back",
			"err", err, "batch", events)
	}
}

// brokerAvailable ends an outage; the first batch after one logs it.
func (r *Relay) brokerAvailable() {
	if r.brokerDown.CompareAndSwap(true, false) {
		r.cfg.Logger.Info("relay: the broker is available again")
	}
}

func (r *Relay) count(outcomes []Outcome) {
	r.batches.Add(1)
	for _, o := range outcomes {
		switch o.Kind {
		case OutcomePublished:
			r.published.Add(1)
		case OutcomeRetry:
			r.retried.Add(1)
		case OutcomeDeadLetter:
			r.deadLettered.Add(1)
		}
	}
}

// logFailures logs each retry at warn and each dead-lettering at error,
// with what an on-call engineer needs to find the event; never its payload.
func (r *Relay) logFailures(records []Record, outcomes []Outcome) {
	for i, o := range outcomes {
		if o.Kind != OutcomeRetry && o.Kind != OutcomeDeadLetter {
			continue
		}
		rec := &records[i]
		attrs := []any{"event_id", rec.ID, "event_type", rec.Type, "aggregate_type", rec.AggregateType,
			"aggregate_id", rec.AggregateID, "sequence", rec.Sequence, "attempt", rec.Attempts + 1, "err", o.Error}
		if o.Kind == OutcomeRetry {
			r.cfg.Logger.Warn("relay: publish failed; retrying", append(attrs, "retry_in", o.Delay)...)
		} else {
			r.cfg.Logger.Error("relay: event dead-lettered; its aggregate's later events wait until it is replayed or discarded", attrs...)
		}
	}
}

var errNoResult = errors.New("publisher returned no result for this message")

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
