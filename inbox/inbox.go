package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// Handler applies one event to the consumer's state, writing in tx only. An
// error rolls back everything of the event (its id record included), so the
// broker delivers it again.
type Handler[TTx any] func(ctx context.Context, tx TTx, ev Event) error

// Outcome is what Handle did with an event.
type Outcome int

const (
	// Applied: the event was its aggregate's next one and the handler ran;
	// held successors it unblocked ran after it (Result.Released).
	Applied Outcome = iota + 1
	// Duplicate: an event with this id went through the inbox before.
	// Nothing ran; acknowledge the message.
	Duplicate
	// Held: the event came before a predecessor. It is stored and its
	// handler will run once the predecessors have been applied;
	// acknowledge the message.
	Held
	// Repeated: the event's sequence was already applied (or is already
	// held) under another id, which a correct producer never does. It is
	// not applied, but logged and counted; acknowledge the message.
	Repeated
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Held:
		return "held"
	case Repeated:
		return "repeated"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// Result tells what Handle did.
type Result struct {
	Outcome Outcome
	// Released counts the held events handled after this one, in sequence
	// order, because it filled their gap.
	Released int
	// Last is the aggregate's last applied sequence after the call (for
	// Duplicate: unknown, 0).
	Last int64
}

// Config tunes an Inbox. The zero value is usable.
type Config struct {
	// Metrics, when set, counts the outcomes (see NewMetrics).
	Metrics *Metrics
	// Logger receives a warning for every Repeated event and an error for
	// every handler failure. Nil discards them.
	Logger *slog.Logger
}

// Inbox runs a consumer's handler at most once per event and in sequence
// order per aggregate, inside the consumer's own transaction. It is safe
// for concurrent use: events of one aggregate are admitted one at a time
// (the driver locks the aggregate's row), those of different aggregates in
// parallel.
type Inbox[TTx any] struct {
	d       Driver[TTx]
	handler Handler[TTx]
	metrics *Metrics
	log     *slog.Logger
}

// New returns an inbox on driver d that applies events with h.
func New[TTx any](d Driver[TTx], h Handler[TTx], cfg Config) *Inbox[TTx] {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Inbox[TTx]{d: d, handler: h, metrics: cfg.Metrics, log: cfg.Logger}
}

// Handle takes ev through the inbox in tx, the consumer's transaction:
//
//   - an id seen before: Duplicate, nothing runs;
//   - the aggregate's next sequence: the handler runs, then every held
//     successor that now follows without a gap, in order (Applied);
//   - a sequence beyond the next: the event is stored until its
//     predecessors arrive (Held);
//   - a sequence already applied, under a new id: Repeated, not applied.
//
// Whatever the outcome, commit tx and acknowledge the message. An error (the
// handler's, wrapped, or the database's) means tx must be rolled back and
// the message delivered again: nothing of the event is kept. An invalid
// event is an error wrapping ErrInvalidEvent, before anything is written.
// Handle counts nothing in Config.Metrics, as the caller's transaction may
// still roll back; Process counts each outcome after its commit.
//
//	err := pool.BeginFunc(ctx, func(tx pgx.Tx) error {
//		_, err := in.Handle(ctx, tx, ev)
//		return err
//	})
func (in *Inbox[TTx]) Handle(ctx context.Context, tx TTx, ev Event) (Result, error) {
	if err := Validate(&ev); err != nil {
		return Result{}, err
	}
	adm, err := in.d.Admit(ctx, tx, &ev)
	if err != nil {
		return Result{}, fmt.Errorf("inbox: admit %s: %w", ev.ID, err)
	}
	switch adm.Verdict {
	case VerdictDuplicate:
		return Result{Outcome: Duplicate}, nil
	case VerdictStale:
		in.log.WarnContext(ctx, "inbox: a sequence already applied came again under a new id; not applied",
			"id", ev.ID, "type", ev.Type, "aggregatetype", ev.AggregateType, "subject", ev.Subject,
			"sequence", ev.Sequence, "last_applied", adm.Last)
		return Result{Outcome: Repeated, Last: adm.Last}, nil
	case VerdictEarly:
		body, err := json.Marshal(ev)
		if err != nil {
			return Result{}, fmt.Errorf("inbox: encode %s: %w", ev.ID, err)
		}
		held, err := in.d.Hold(ctx, tx, &ev, body)
		if err != nil {
			return Result{}, fmt.Errorf("inbox: hold %s: %w", ev.ID, err)
		}
		if !held {
			in.log.WarnContext(ctx, "inbox: a sequence already held came again under a new id; not applied",
				"id", ev.ID, "type", ev.Type, "aggregatetype", ev.AggregateType, "subject", ev.Subject,
				"sequence", ev.Sequence)
			return Result{Outcome: Repeated, Last: adm.Last}, nil
		}
		return Result{Outcome: Held, Last: adm.Last}, nil
	case VerdictNext:
	default:
		return Result{}, fmt.Errorf("inbox: admit %s: unknown verdict %d", ev.ID, adm.Verdict)
	}
	if err := in.apply(ctx, tx, ev); err != nil {
		return Result{}, err
	}
	res := Result{Outcome: Applied, Last: ev.Sequence}
	if adm.Successor {
		n, err := in.drain(ctx, tx, ev.AggregateType, ev.Subject, ev.Sequence+1)
		if err != nil {
			return Result{}, err
		}
		res.Released, res.Last = n, ev.Sequence+int64(n)
	}
	return res, nil
}

// apply runs the handler on ev.
func (in *Inbox[TTx]) apply(ctx context.Context, tx TTx, ev Event) error {
	if err := in.handler(ctx, tx, ev); err != nil {
		in.log.ErrorContext(ctx, "inbox: handler failed; the event is rolled back",
			"id", ev.ID, "type", ev.Type, "aggregatetype", ev.AggregateType, "subject", ev.Subject,
			"sequence", ev.Sequence, "err", err)
		return &HandlerError{Event: ev, Err: err}
	}
	return nil
}

// drain handles the held events of the aggregate from sequence next on,
// while they follow without a gap, then records the last one applied. It
// returns how many it handled.
func (in *Inbox[TTx]) drain(ctx context.Context, tx TTx, aggType, aggID string, next int64) (int, error) {
	n := 0
	for seq := next; ; seq++ {
		body, ok, err := in.d.TakeHeld(ctx, tx, aggType, aggID, seq)
		if err != nil {
			return 0, fmt.Errorf("inbox: take held %s/%s #%d: %w", aggType, aggID, seq, err)
		}
		if !ok {
			break
		}
		ev, err := Decode(body)
		if err != nil { // the inbox stored it: cannot happen unless the row was edited
			return 0, fmt.Errorf("inbox: held %s/%s #%d: %w", aggType, aggID, seq, err)
		}
		if err := in.apply(ctx, tx, ev); err != nil {
			return 0, err
		}
		n++
	}
	if n > 0 {
		if err := in.d.Advance(ctx, tx, aggType, aggID, next-1+int64(n)); err != nil {
			return 0, fmt.Errorf("inbox: advance %s/%s: %w", aggType, aggID, err)
		}
	}
	return n, nil
}

// HandlerError is the handler's failure on an event, as Handle returns it.
type HandlerError struct {
	Event Event
	Err   error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("inbox: handler failed on %s (%s %s/%s #%d): %v",
		e.Event.ID, e.Event.Type, e.Event.AggregateType, e.Event.Subject, e.Event.Sequence, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

// Process runs Handle in a new transaction of the driver and commits it: the
// call for consumers that keep no transaction of their own open. It counts
// the outcome in the inbox's Metrics.
func (in *Inbox[TTx]) Process(ctx context.Context, ev Event) (Result, error) {
	var res Result
	err := in.d.WithTx(ctx, func(tx TTx) error {
		var err error
		res, err = in.Handle(ctx, tx, ev)
		return err
	})
	if err != nil {
		in.metrics.failed(err)
		return Result{}, err
	}
	in.metrics.observe(res)
	return res, nil
}

// Deliver decodes a message body (Decode) and processes it (Process): the
// function to call for each message from the broker consumers
// (natsjs.Consume, kafka.Consume, rabbitmq.Consume, redisstream.Consume,
// webhook.DeliverTo); DeliverBatch takes a batch of them.
// They acknowledge the message when it returns nil and have it delivered
// again on an error, except a body that is no event the inbox can take: its
// error wraps ErrInvalidEvent and is marked outbox.Permanent, and the
// consumers terminate (or drop) the message after logging it.
func (in *Inbox[TTx]) Deliver(ctx context.Context, body []byte) error {
	ev, err := Decode(body)
	if err != nil {
		in.metrics.failed(err)
		in.log.ErrorContext(ctx, "inbox: message refused", "err", err)
		return outbox.Permanent(err)
	}
	_, err = in.Process(ctx, ev)
	return err
}

// SkipGap gives up waiting for the missing events of an aggregate: it
// moves the aggregate's last applied sequence to just before its lowest
// held event and handles the held events that follow without a gap, in a
// new transaction, returning how many. Use it when the missing events will
// never come (their dead letters were discarded upstream, say); Gaps lists
// the candidates. An aggregate without held events is left alone (0, nil);
// one the inbox has never seen is ErrUnknownAggregate.
func (in *Inbox[TTx]) SkipGap(ctx context.Context, aggregateType, aggregateID string) (int, error) {
	n := 0
	err := in.d.WithTx(ctx, func(tx TTx) error {
		_, first, err := in.d.LockAggregate(ctx, tx, aggregateType, aggregateID)
		if err != nil || first == 0 {
			return err
		}
		if err := in.d.Advance(ctx, tx, aggregateType, aggregateID, first-1); err != nil {
			return err
		}
		n, err = in.drain(ctx, tx, aggregateType, aggregateID, first)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: skip gap of %s/%s: %w", aggregateType, aggregateID, err)
	}
	in.metrics.released(n)
	return n, nil
}

// Gaps lists the aggregates whose oldest held event has waited at least
// olderThan (Admin.Gaps).
func (in *Inbox[TTx]) Gaps(ctx context.Context, olderThan time.Duration) ([]Gap, error) {
	if olderThan < 0 {
		return nil, errors.New("inbox: gaps: negative age")
	}
	return in.d.Gaps(ctx, olderThan)
}

// Prune deletes id records older than p.OlderThan in batches (Admin.Prune).
func (in *Inbox[TTx]) Prune(ctx context.Context, p PruneParams) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	return in.d.Prune(ctx, p)
}
