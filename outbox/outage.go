package outbox

import (
	"context"
	"errors"
)

// ErrBrokerUnavailable marks a publish failure of the broker as a whole (no
// connection, the broker refusing service), not of the message. Publishers
// wrap connection-level errors with it; the relay then treats the batch as
// an outage rather than as failures of its events.
var ErrBrokerUnavailable = errors.New("outbox: broker unavailable")

// isOutage reports whether a batch's publish results show the broker, not
// its events, failing: every message failed, none for good, and either a
// publisher said the broker is unavailable, or every message timed out, or
// two or more failed with one and the same error. A lone message that fails
// with an error of its own is not an outage: it is charged an attempt, so
// that a poison event is still dead-lettered while the broker is healthy.
func isOutage(errs []error) bool {
	if len(errs) == 0 {
		return false
	}
	unavailable, timeouts := false, 0
	for _, err := range errs {
		switch {
		case err == nil, IsPermanent(err):
			return false
		case errors.Is(err, ErrBrokerUnavailable):
			unavailable = true
		case errors.Is(err, context.DeadlineExceeded):
			timeouts++
		}
	}
	if unavailable || timeouts == len(errs) {
		return true
	}
	if len(errs) < 2 {
		return false
	}
	first := errs[0].Error()
	for _, err := range errs[1:] {
		if err.Error() != first {
			return false
		}
	}
	return true
}
