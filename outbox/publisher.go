package outbox

import "context"

// Publisher sends events to a broker. Implementations live in package broker's
// subpackages and all pass the suite in package publishertest.
type Publisher interface {
	// Publish sends msgs and waits until the broker has acknowledged each
	// one or failed it. It returns exactly one error per message, nil where
	// the broker acknowledged it (a short slice counts the missing ones as
	// failed). Wrap with Permanent an error no retry can fix; an error caused
	// by ctx wraps ctx.Err() and is never Permanent. Messages of one call
	// belong to distinct aggregates, so they may be sent concurrently.
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
