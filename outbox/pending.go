package outbox

import (
	"context"
	"time"
)

// MaxPendingEvents is the most events PendingEvents returns.
const MaxPendingEvents = 1000

// PendingEvent is an event waiting in the outbox, as an operator sees it.
type PendingEvent struct {
	Record
	// NextAttemptAt is when the relay may claim the event next: its
	// enqueue time until it fails, then the time its backoff ends.
	NextAttemptAt time.Time
	// Parked is true while an open dead letter of an earlier sequence of
	// the aggregate holds the event back (as Stats.Parked counts them). A
	// relay set to MoveOnPastDeadLetters does not wait for it.
	Parked bool
}

// EventReader reads the events one aggregate still has in the outbox (not
// yet published; published events are deleted). Both drivers implement it;
// it is separate from Admin so that an Admin need not.
type EventReader interface {
	// PendingEvents returns the aggregate's events in the outbox in sequence
	// order, at most limit of them (1 to MaxPendingEvents; outside that,
	// MaxPendingEvents). An event a relay is publishing at that moment is
	// listed as it was before the claim.
	PendingEvents(ctx context.Context, aggregateType, aggregateID string, limit int) ([]PendingEvent, error)
}

// PendingLimit is limit as PendingEvents takes it: 1 to MaxPendingEvents,
// MaxPendingEvents outside that. Drivers call it.
func PendingLimit(limit int) int {
	if limit < 1 || limit > MaxPendingEvents {
		return MaxPendingEvents
	}
	return limit
}
