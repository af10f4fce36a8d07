package outbox

import "errors"

var (
	// ErrInvalidEvent wraps every reason an Event is refused before it is written.
	ErrInvalidEvent = errors.New("outbox: invalid event")
	// ErrDuplicate means an event with the same id or idempotency key is already stored.
	// The caller's transaction can no longer commit and must be rolled back.
	ErrDuplicate = errors.New("outbox: duplicate event")
	// ErrNotFound means no dead letter has the given id.
	ErrNotFound = errors.New("outbox: not found")
	// ErrAlreadyResolved means a dead letter was already replayed or discarded.
	ErrAlreadyResolved = errors.New("outbox: dead letter already replayed or discarded")
	// ErrInvalidFilter wraps every reason a DeadLetterFilter is refused
	// (see DeadLetterFilter.Validate and FilterError). Nothing was read or
	// written.
	ErrInvalidFilter = errors.New("outbox: invalid dead-letter filter")
	// ErrBusy means the database stayed locked by other writers for too
	// long. Nothing was written; the operation can be tried again.
	ErrBusy = errors.New("outbox: database busy")
)

// permanentError marks a publish failure that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return "permanent: " + p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as a failure that no retry can fix (a webhook's 400, a
// message the broker will never accept). The relay dead-letters the event at
// once instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
