package outbox

import (
	"context"
	"errors"
)

// Publisher sends events to a broker. Implementations live in package broker's
// subpackages and all pass the suite in package publishertest.
type Publisher interface {
	// Publish sends msgs and waits until the broker has acknowledged each
	// one or failed it. It returns exactly one error per message, nil where
	// the broker acknowledged it (a short slice counts the missing ones as
	// failed). Wrap with Permanent an error no retry can fix; an error caused
	// by ctx wraps ctx.Err() and is never Permanent. Messages of one call
	// belong to distinct aggregates, so they may be sent concurrently —
	// unless the publisher is a RunPublisher that keeps runs.
	Publish(ctx context.Context, msgs []Message) []error
	// Close waits for Publish calls in flight and releases the connection.
	// It is safe to call twice.
	Close() error
}

// Message is one event ready for the wire.
type Message struct {
	Record
	// Body is the event as a CloudEvents 1.0 JSON document.
	Body []byte
}

// AllFailed is a helper for publishers: one copy of err for each message.
func AllFailed(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// RunPublisher is a Publisher that can take runs: several consecutive events
// of one aggregate in one Publish call. Draining an aggregate with a long
// backlog one event per round trip is slow; a run sends its events in one.
//
// While KeepsRuns returns true, the relay may give Publish up to a whole
// batch of one aggregate's events, in sequence order (other aggregates'
// messages may sit between them). The publisher must then keep each
// aggregate's messages in that order at the broker, and once one of them
// fails, make sure the broker stores none of that aggregate's later ones in
// the call, reporting each of those with an error wrapping ErrRunBroken.
// Only a broker that refuses the rest of a run by itself can promise that
// (Kafka's idempotent producer, JetStream's atomic batches); the others do
// not implement RunPublisher, and the relay sends them heads only.
type RunPublisher interface {
	Publisher
	// KeepsRuns reports whether Publish may be given runs now (the answer
	// may depend on the broker's version, learnt on connecting).
	KeepsRuns() bool
}

// KeepsRuns reports whether p is a RunPublisher that keeps runs now. A type
// that wraps a Publisher (to time or trace it) should pass the answer on,
// or the relay sends a run-keeping broker one event per aggregate per call:
//
//	func (w wrapper) KeepsRuns() bool { return outbox.KeepsRuns(w.Publisher) }
func KeepsRuns(p Publisher) bool {
	rp, ok := p.(RunPublisher)
	return ok && rp.KeepsRuns()
}

// ErrRunBroken is a RunPublisher's error for a message it did not send (or
// the broker refused) because an earlier message of the same aggregate in
// the same call failed. The relay gives such events back without charging
// an attempt: they did not fail, their predecessor did.
var ErrRunBroken = errors.New("outbox: not sent: an earlier event of its aggregate in the batch failed")
