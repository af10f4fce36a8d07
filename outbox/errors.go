package outbox

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrInvalidEvent wraps every reason an Event is refused before it is written.
	ErrInvalidEvent = errors.New("outbox: invalid event")
	// ErrDuplicate means an event with the same id or idempotency key is already stored.
	// The caller's transaction can no longer commit and must be rolled back.
	ErrDuplicate = errors.New("outbox: duplicate event")
	// ErrNotFound means no dead letter has the given id.
	ErrNotFound = errors.New("outbox: not found")
	// ErrAlreadyResolved means a dead letter was already replayed or
	// discarded. The drivers return it as a *ResolvedError, which says which
	// and when.
	ErrAlreadyResolved = errors.New("outbox: dead letter already replayed or discarded")
	// ErrInvalidFilter wraps every reason a DeadLetterFilter is refused
	// (see DeadLetterFilter.Validate and FilterError). Nothing was read or
	// written.
	ErrInvalidFilter = errors.New("outbox: invalid dead-letter filter")
	// ErrBusy means the database stayed locked by other writers for too
	// long. Nothing was written; the operation can be tried again.
	ErrBusy = errors.New("outbox: database busy")
)

// ResolvedError is the drivers' ErrAlreadyResolved: the dead letter ID was
// already replayed or discarded (State), at At. errors.Is(err,
// ErrAlreadyResolved) holds for it.
type ResolvedError struct {
	ID    int64
	State DeadLetterState // DeadLetterReplayed or DeadLetterDiscarded
	At    time.Time       // when it was replayed or discarded
}

func (e *ResolvedError) Error() string {
	return fmt.Sprintf("outbox: dead letter %d was already %s at %s", e.ID, e.State, e.At.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(e, ErrAlreadyResolved) true.
func (e *ResolvedError) Is(target error) bool { return target == ErrAlreadyResolved }

// Resolved is the ErrAlreadyResolved of a resolved dead letter d.
func Resolved(d DeadLetter) error {
	e := &ResolvedError{ID: d.ID, State: d.State()}
	switch {
	case d.ReprocessedAt != nil:
		e.At = *d.ReprocessedAt
	case d.DiscardedAt != nil:
		e.At = *d.DiscardedAt
	}
	return e
}

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
