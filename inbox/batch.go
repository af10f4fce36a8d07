package inbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldhq/herald/outbox"
)

// BatchResult is what ProcessBatch did with one event of a batch.
type BatchResult struct {
	Result
	// Err is nil when the event's outcome committed: acknowledge the
	// message. Otherwise nothing of the event was kept (a *HandlerError,
	// the database's error, or an invalid event's error wrapping
	// ErrInvalidEvent): have it delivered again, or refuse it for good if
	// it is invalid.
	Err error
}

// BatchError is HandleBatch's failure: the event at Index of the batch
// could not be handled (Err is its *HandlerError, or its ErrInvalidEvent),
// or, when Index is -1, the batch failed as a whole (Err is the database's
// error). Either way the transaction must be rolled back.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("inbox: batch: %v", e.Err)
	}
	return fmt.Sprintf("inbox: batch event %d: %v", e.Index, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

// HandleBatch takes a batch of events through the inbox in tx, the
// consumer's transaction, as if Handle took them one by one ordered by
// aggregate (type, then id) and sequence, events of equal sequence in
// their batch order: within a batch an aggregate's events are applied in
// sequence order whatever order they came in, and the events of a batch
// that fill a gap release the held ones they reach. It returns each
// event's Result at its position in evs. Every outcome commits with tx.
//
// On a driver that is a BatchDriver (pginbox) the whole batch costs two
// round trips besides the handlers: one records every id and locks and
// reads every aggregate, one writes the aggregates' new positions and the
// events to hold. Otherwise the events go through the driver one by one.
//
// An error is a *BatchError: tx must be rolled back, and nothing of the
// batch is kept. Its Index names the event whose handler failed (or that
// released a held event whose handler failed), or an invalid event (found
// before anything is written); the other events are not to blame, and may
// be taken again without it (ProcessBatch does). Index -1 is a database
// failure of the batch as a whole.
func (in *Inbox[TTx]) HandleBatch(ctx context.Context, tx TTx, evs []Event) ([]Result, error) {
	for i := range evs {
		if err := Validate(&evs[i]); err != nil {
			return nil, &BatchError{Index: i, Err: err}
		}
	}
	if len(evs) == 0 {
		return nil, nil
	}
	order := batchOrder(evs)
	bd, ok := in.d.(BatchDriver[TTx])
	if !ok {
		res := make([]Result, len(evs))
		for _, i := range order {
			r, err := in.Handle(ctx, tx, evs[i])
			if err != nil {
				index := -1 // the database's failure
				if _, ok := errors.AsType[*HandlerError](err); ok {
					index = i
				}
				return nil, &BatchError{Index: index, Err: err}
			}
			res[i] = r
		}
		return res, nil
	}
	return in.handleBatch(ctx, tx, bd, evs, order)
}

// batchOrder returns the indexes of evs ordered by aggregate type, aggregate
// id and sequence, equal ones in their batch order.
func batchOrder(evs []Event) []int {
	order := make([]int, len(evs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		x, y := &evs[a], &evs[b]
		return cmp.Or(cmp.Compare(x.AggregateType, y.AggregateType), cmp.Compare(x.Subject, y.Subject),
			cmp.Compare(x.Sequence, y.Sequence))
	})
	return order
}

// step is one handler call of a batch: the batch's event at index, or the
// held event released at Settlement.Take[take] on its behalf.
type step struct {
	index int
	take  int // -1: the batch's own event
}

// handleBatch is HandleBatch on a BatchDriver: it admits the batch at once,
// decides on every event as Handle would in order, writes the decisions,
// then runs the handlers.
func (in *Inbox[TTx]) handleBatch(ctx context.Context, tx TTx, bd BatchDriver[TTx], evs []Event, order []int) ([]Result, error) {
	res := make([]Result, len(evs))
	// The first event of each id in order is taken; the others are
	// duplicates of it. The aggregates come in order, each once.
	var (
		ids     = make([]string, 0, len(evs))
		idOf    = make(map[string]int, len(evs)) // id → its position in ids
		primary = make([]int, 0, len(evs))       // indexes of the events taken, in order
		aggs    []BatchAggregate
	)
	for _, i := range order {
		ev := &evs[i]
		if _, dup := idOf[ev.ID]; dup {
			res[i] = Result{Outcome: Duplicate}
			continue
		}
		idOf[ev.ID] = len(ids)
		ids = append(ids, ev.ID)
		primary = append(primary, i)
		// The guess: the aggregate's events are the next ones, without a
		// gap nor a repeat.
		k := AggregateKey{ev.AggregateType, ev.Subject}
		switch a := lastOf(aggs); {
		case a == nil || a.AggregateKey != k:
			aggs = append(aggs, BatchAggregate{AggregateKey: k, Expect: ev.Sequence - 1, Upto: ev.Sequence})
		case a.Expect >= 0 && ev.Sequence == a.Upto+1:
			a.Upto = ev.Sequence
		default:
			a.Expect = -1
		}
	}
	adm, err := bd.AdmitBatch(ctx, tx, ids, aggs)
	if err != nil {
		return nil, &BatchError{Index: -1, Err: fmt.Errorf("admit: %w", err)}
	}
	if len(adm.Seen) != len(ids) || len(adm.Aggregates) != len(aggs) {
		return nil, &BatchError{Index: -1, Err: errors.New("admit: the driver's answer does not match the batch")}
	}

	var (
		set   Settlement
		steps = make([]step, 0, len(primary))
		j     = -1 // the aggregate in aggs
		cur   int64
		held  map[int64]bool // sequences held in the database, not yet released
		early map[int64]bool // sequences held by this batch
	)
	for n, i := range primary {
		ev := &evs[i]
		if k := (AggregateKey{ev.AggregateType, ev.Subject}); j < 0 || aggs[j].AggregateKey != k {
			if j >= 0 {
				set.Advance = advance(set.Advance, aggs[j], adm.Aggregates[j], cur)
			}
			j++
			cur, held, early = adm.Aggregates[j].Last, nil, nil
			if h := adm.Aggregates[j].Held; len(h) > 0 {
				held = make(map[int64]bool, len(h))
				for _, s := range h {
					held[s] = true
				}
			}
		}
		switch {
		case adm.Seen[n]:
			res[i] = Result{Outcome: Duplicate}
		case ev.Sequence <= cur:
			in.warnRepeated(ctx, ev, "a sequence already applied came again under a new id; not applied", cur)
			res[i] = Result{Outcome: Repeated, Last: cur}
		case ev.Sequence > cur+1:
			if held[ev.Sequence] || early[ev.Sequence] {
				in.warnRepeated(ctx, ev, "a sequence already held came again under a new id; not applied", cur)
				res[i] = Result{Outcome: Repeated, Last: cur}
				break
			}
			body, err := json.Marshal(ev)
			if err != nil {
				return nil, &BatchError{Index: i, Err: fmt.Errorf("inbox: encode %s: %w", ev.ID, err)}
			}
			if early == nil {
				early = map[int64]bool{}
			}
			early[ev.Sequence] = true
			set.Hold = append(set.Hold, HeldEvent{Event: ev, Body: body})
			res[i] = Result{Outcome: Held, Last: cur}
		default:
			cur = ev.Sequence
			steps = append(steps, step{index: i, take: -1})
			released := 0
			for held[cur+1] {
				cur++
				delete(held, cur)
				steps = append(steps, step{index: i, take: len(set.Take)})
				set.Take = append(set.Take, Position{aggs[j].AggregateKey, cur})
				released++
			}
			res[i] = Result{Outcome: Applied, Released: released, Last: cur}
		}
	}
	if j >= 0 {
		set.Advance = advance(set.Advance, aggs[j], adm.Aggregates[j], cur)
	}

	taken, err := bd.SettleBatch(ctx, tx, set)
	if err != nil {
		return nil, &BatchError{Index: -1, Err: fmt.Errorf("settle: %w", err)}
	}
	if len(taken) != len(set.Take) {
		return nil, &BatchError{Index: -1, Err: errors.New("settle: the driver's answer does not match the batch")}
	}
	for _, s := range steps {
		ev := evs[s.index]
		if s.take >= 0 {
			p := set.Take[s.take]
			if ev, err = Decode(taken[s.take]); err != nil { // the inbox stored it: cannot happen unless the row was edited
				return nil, &BatchError{Index: s.index, Err: fmt.Errorf("inbox: held %s/%s #%d: %w",
					p.Aggregate.Type, p.Aggregate.ID, p.Sequence, err)}
			}
		}
		if err := in.apply(ctx, tx, ev); err != nil {
			return nil, &BatchError{Index: s.index, Err: err}
		}
	}
	return res, nil
}

func lastOf(aggs []BatchAggregate) *BatchAggregate {
	if len(aggs) == 0 {
		return nil
	}
	return &aggs[len(aggs)-1]
}

// advance appends the aggregate's new position to ps unless the database
// holds it already: the driver advanced it to the guess, or it did not
// move.
func advance(ps []Position, a BatchAggregate, st AggregateState, last int64) []Position {
	written := st.Last
	if st.Advanced {
		written = a.Upto
	}
	if last == written {
		return ps
	}
	return append(ps, Position{a.AggregateKey, last})
}

func (in *Inbox[TTx]) warnRepeated(ctx context.Context, ev *Event, msg string, last int64) {
	in.log.WarnContext(ctx, "inbox: "+msg,
		"id", ev.ID, "type", ev.Type, "aggregatetype", ev.AggregateType, "subject", ev.Subject,
		"sequence", ev.Sequence, "last_applied", last)
}

// ProcessBatch takes a batch of events through the inbox in one new
// transaction of the driver (HandleBatch), so that one commit covers them
// all, and returns each event's BatchResult at its position in evs. It
// counts the outcomes in the inbox's Metrics.
//
// An event whose handler fails is rolled back alone: the transaction is
// rolled back, and the batch taken again without it in a new one, until
// one commits. Its BatchResult has the *HandlerError; the others commit.
// As in Handle, a failure of a held event released by an event of the
// batch is that event's failure. An invalid event is left out before the
// transaction, with its error. A database failure of the batch as a whole
// fails every event that had not committed. Each failure costs the batch
// one more transaction, so a batch with many failing events is slow, but
// it is never wrong.
func (in *Inbox[TTx]) ProcessBatch(ctx context.Context, evs []Event) []BatchResult {
	out := make([]BatchResult, len(evs))
	pending := make([]int, 0, len(evs)) // indexes of the events to take
	for i := range evs {
		if err := Validate(&evs[i]); err != nil {
			out[i].Err = err
			in.metrics.failed(err)
			continue
		}
		pending = append(pending, i)
	}
	batch := make([]Event, 0, len(pending))
	for len(pending) > 0 {
		batch = batch[:0]
		for _, i := range pending {
			batch = append(batch, evs[i])
		}
		var res []Result
		err := in.d.WithTx(ctx, func(tx TTx) error {
			var err error
			res, err = in.HandleBatch(ctx, tx, batch)
			return err
		})
		if err == nil {
			for n, i := range pending {
				out[i].Result = res[n]
				in.metrics.observe(res[n])
			}
			break
		}
		var be *BatchError
		if errors.As(err, &be) && be.Index >= 0 {
			// This event's fault: the others go again without it.
			i := pending[be.Index]
			out[i].Err = be.Err
			in.metrics.failed(be.Err)
			pending = slices.Delete(pending, be.Index, be.Index+1)
			continue
		}
		for _, i := range pending {
			out[i].Err = err
			in.metrics.failed(err)
		}
		break
	}
	return out
}

// DeliverBatch decodes message bodies (Decode) and processes the events in
// one transaction (ProcessBatch): the function for broker consumers that
// hand over messages in batches. It returns each message's error at its
// position: nil, acknowledge it; an error, have it delivered again, except
// for a body that is no event the inbox can take, whose error wraps
// ErrInvalidEvent and is marked outbox.Permanent, as Deliver's.
func (in *Inbox[TTx]) DeliverBatch(ctx context.Context, bodies [][]byte) []error {
	errs := make([]error, len(bodies))
	evs := make([]Event, 0, len(bodies))
	at := make([]int, 0, len(bodies)) // the body of each event
	for i, body := range bodies {
		ev, err := Decode(body)
		if err != nil {
			in.metrics.failed(err)
			in.log.ErrorContext(ctx, "inbox: message refused", "err", err)
			errs[i] = outbox.Permanent(err)
			continue
		}
		evs = append(evs, ev)
		at = append(at, i)
	}
	for n, r := range in.ProcessBatch(ctx, evs) {
		errs[at[n]] = r.Err
	}
	return errs
}
