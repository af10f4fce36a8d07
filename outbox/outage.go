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
// its events, failing: every message failed, none for good, and either
// every failure says the broker is unavailable (ErrBrokerUnavailable, which
// the adapters give a lost connection), or the publish deadline itself
// passed with every message still unacknowledged. Messages that a
// RunPublisher did not send behind a failed one of their run (ErrRunBroken)
// count for neither. Failures of the messages themselves, even alike (a
// fixed "unroutable" error for several events), are charged as attempts,
// so that poison events are still dead-lettered.
func isOutage(errs []error, deadlinePassed bool) bool {
	if len(errs) == 0 {
		return false
	}
	unavailable, timeouts, unsent := 0, 0, 0
	for _, err := range errs {
		switch {
		case err == nil, IsPermanent(err):
			return false
		case errors.Is(err, ErrRunBroken):
			unsent++ // behind a failed event of its run: says nothing
		case errors.Is(err, ErrBrokerUnavailable):
			unavailable++
		case errors.Is(err, context.DeadlineExceeded):
			timeouts++
		}
	}
	failed := len(errs) - unsent
	return failed > 0 && (unavailable == failed || deadlinePassed && timeouts == failed)
}
