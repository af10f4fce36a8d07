package outbox

import (
	"errors"
	"fmt"
)

// Errors of a database that cannot be reached. Drivers mark the errors of a
// lost or refused connection with them (pgstore does, from pgx's own
// predicates); the driver's error stays in the chain for errors.As.
var (
	// ErrUnavailable means the database could not be reached, or the
	// connection to it was lost before a commit was sent (a server that
	// restarted, a terminated session): the transaction did not commit,
	// nothing was written, and the operation can be tried again.
	ErrUnavailable = errors.New("outbox: database unavailable; nothing was written")
	// ErrOutcomeUnknown means the connection was lost while a commit was
	// in flight: the transaction may or may not have committed. It matches
	// ErrUnavailable too (errors.Is), so test for it first. Retrying is
	// safe only for an operation that is idempotent.
	ErrOutcomeUnknown = fmt.Errorf("%w: the connection was lost during the commit, the outcome is unknown", unavailableBase{})
)

// unavailableBase is what ErrOutcomeUnknown wraps: it matches
// ErrUnavailable without saying that nothing was written.
type unavailableBase struct{}

func (unavailableBase) Error() string        { return "outbox: database unavailable" }
func (unavailableBase) Is(target error) bool { return target == ErrUnavailable }
