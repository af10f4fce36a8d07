package outbox

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FilterError is a DeadLetterFilter that Validate refused: every field at
// fault, in the order of the struct, with what is wrong with it.
// errors.Is(err, ErrInvalidFilter) holds for it.
type FilterError struct {
	Fields []FilterFieldError
}

// FilterFieldError is one refused field of a DeadLetterFilter.
type FilterFieldError struct {
	// Field is the DeadLetterFilter field's Go name: State, AggregateType,
	// AggregateID, EventType, ErrorContains, AfterID or Limit. Front ends show it under
	// their own name for it (a query parameter, a flag).
	Field string
	// Message says what is wrong, to follow the field's name:
	// "must not contain control characters".
	Message string
}

func (e *FilterError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidFilter.Error())
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Field + " " + f.Message)
	}
	return b.String()
}

func (e *FilterError) Unwrap() error { return ErrInvalidFilter }

// Validate reports why f cannot select dead letters, as a *FilterError
// naming every field at fault, or nil. It refuses
//
//   - a State other than "", DeadLetterAll, DeadLetterOpen,
//     DeadLetterReplayed and DeadLetterDiscarded;
//   - an AggregateType, AggregateID or EventType that is not valid UTF-8,
//     holds a control character (NUL among them) or is longer than
//     MaxNameLen bytes;
//   - an ErrorContains that is not valid UTF-8, holds a NUL character or is
//     longer than MaxNameLen bytes;
//   - a negative AfterID or Limit.
//
// ListDeadLetters and ReplayDeadLetters of both drivers call it before they
// touch the database, so a filter is refused the same way on every database
// and never reaches one as a value it cannot take; the HTTP API and the
// command line call it to name the offending parameter or flag. (An event's
// names may hold control characters other than NUL: such an aggregate's dead
// letters are listed without that filter and replayed by id.)
func (f DeadLetterFilter) Validate() error {
	var fe []FilterFieldError
	fail := func(field, msg string) { fe = append(fe, FilterFieldError{Field: field, Message: msg}) }
	switch f.State {
	case "", DeadLetterAll, DeadLetterOpen, DeadLetterReplayed, DeadLetterDiscarded:
	default:
		fail("State", "must be one of open, replayed, discarded or all")
	}
	for _, c := range []struct{ field, v string }{
		{"AggregateType", f.AggregateType},
		{"AggregateID", f.AggregateID},
		{"EventType", f.EventType},
	} {
		switch {
		case !utf8.ValidString(c.v):
			fail(c.field, "must be valid UTF-8")
		case strings.ContainsFunc(c.v, unicode.IsControl):
			fail(c.field, "must not contain control characters")
		case len(c.v) > MaxNameLen:
			fail(c.field, "must be at most "+strconv.Itoa(MaxNameLen)+" bytes")
		}
	}
	switch {
	case !utf8.ValidString(f.ErrorContains):
		fail("ErrorContains", "must be valid UTF-8")
	case strings.ContainsRune(f.ErrorContains, 0):
		fail("ErrorContains", "must not contain NUL characters")
	case len(f.ErrorContains) > MaxNameLen:
		fail("ErrorContains", "must be at most "+strconv.Itoa(MaxNameLen)+" bytes")
	}
	if f.AfterID < 0 {
		fail("AfterID", "must not be negative")
	}
	if f.Limit < 0 {
		fail("Limit", "must not be negative")
	}
	if len(fe) == 0 {
		return nil
	}
	return &FilterError{Fields: fe}
}
