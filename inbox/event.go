package inbox

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/heraldhq/herald/outbox"
)

// Event is an event as the inbox receives it: the CloudEvents document an
// outbox relay published (outbox.EncodeCloudEvent). The inbox reads its ID,
// AggregateType, Subject (the aggregate id) and Sequence; the handler reads
// the rest.
type Event = outbox.CloudEvent

// MaxNameLen bounds the event id, aggregate type and aggregate id, as the
// outbox bounds them.
const MaxNameLen = outbox.MaxNameLen

// ErrInvalidEvent wraps every reason an event cannot go through the inbox:
// a body that is not a Herald CloudEvent, or one without what the inbox
// keys on. Retrying cannot fix it; consumers acknowledge (or terminate) the
// message and report it.
var ErrInvalidEvent = errors.New("inbox: invalid event")

// Decode parses a message body as a Herald CloudEvent and checks that it
// has what the inbox needs: an id, an aggregate type, a subject (the
// aggregate id) and a sequence of at least 1. A refused body is an error
// wrapping ErrInvalidEvent.
func Decode(body []byte) (Event, error) {
	ev, err := outbox.ParseCloudEvent(body)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if err := Validate(&ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Validate reports why ev cannot go through the inbox, wrapping
// ErrInvalidEvent: the fields the inbox keys on must be set, at most
// MaxNameLen bytes, valid UTF-8 without NUL characters (a database text
// column takes nothing else), and the sequence at least 1.
func Validate(ev *Event) error {
	for _, f := range []struct{ name, v string }{
		{"id", ev.ID},
		{"aggregatetype", ev.AggregateType},
		{"subject", ev.Subject},
	} {
		switch {
		case f.v == "":
			return fmt.Errorf("%w: %s is required", ErrInvalidEvent, f.name)
		case len(f.v) > MaxNameLen:
			return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidEvent, f.name, MaxNameLen)
		case !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0):
			return fmt.Errorf("%w: %s must be valid UTF-8 without NUL characters", ErrInvalidEvent, f.name)
		}
	}
	if ev.Sequence < 1 {
		return fmt.Errorf("%w: sequence %d, want >= 1", ErrInvalidEvent, ev.Sequence)
	}
	return nil
}
