package outbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits on the fields of an Event. They keep one bad caller from filling the
// outbox with rows the relay cannot publish.
const (
	MaxNameLen = 255 // aggregate type, aggregate id, event type, idempotency key
	// MaxPayloadLen leaves room for the CloudEvents envelope and headers
	// under the 1 MiB message limit that brokers commonly default to.
	MaxPayloadLen = 1<<20 - 16<<10
)

// Event is what a caller enqueues: one fact about one aggregate.
type Event struct {
	// ID identifies the event everywhere (outbox row, broker message id,
	// CloudEvents id). Left zero, Enqueue assigns a UUIDv7.
	ID            uuid.UUID
	AggregateType string
	AggregateID   string
	Type          string
	// Payload is the event's JSON data; it must be a valid JSON value.
	Payload json.RawMessage
	// Headers carry context such as the W3C traceparent. Optional; an
	// event read back without headers has a nil map.
	Headers map[string]string
	// IdempotencyKey, when set, is unique across the outbox: a second event
	// with the same key is refused with ErrDuplicate.
	IdempotencyKey string
	// Sequence, when non-zero, is the event's position in its aggregate as
	// the caller numbers it: 1, 2, 3… without gaps, under a row lock that the
	// caller holds on the aggregate until its transaction ends (typically a
	// column of the aggregate's row, updated in the statement that changes
	// it anyway). The outbox then neither reads nor writes its own
	// per-aggregate counter, which saves a row write per transaction. Left
	// zero, the outbox numbers the event itself. Number all events of an
	// aggregate one way or the other: a sequence already taken is
	// ErrDuplicate.
	Sequence int64
}

// Validate reports why e cannot be enqueued, wrapping ErrInvalidEvent.
func (e *Event) Validate() error {
	check := func(field, v string, required bool) error {
		if required && v == "" {
			return fmt.Errorf("%w: %s is required", ErrInvalidEvent, field)
		}
		if len(v) > MaxNameLen {
			return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidEvent, field, MaxNameLen)
		}
		if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return fmt.Errorf("%w: %s must be valid UTF-8 without NUL characters", ErrInvalidEvent, field)
		}
		return nil
	}
	for _, c := range []struct {
		field, v string
		required bool
	}{
		{"aggregate type", e.AggregateType, true},
		{"aggregate id", e.AggregateID, true},
		{"event type", e.Type, true},
		{"idempotency key", e.IdempotencyKey, false},
	} {
		if err := check(c.field, c.v, c.required); err != nil {
			return err
		}
	}
	if e.Sequence < 0 {
		return fmt.Errorf("%w: sequence %d is negative", ErrInvalidEvent, e.Sequence)
	}
	if len(e.Payload) > MaxPayloadLen {
		return fmt.Errorf("%w: payload is larger than %d bytes", ErrInvalidEvent, MaxPayloadLen)
	}
	if !json.Valid(e.Payload) {
		return fmt.Errorf("%w: payload is not valid JSON", ErrInvalidEvent)
	}
	// PostgreSQL's jsonb refuses the NUL character; refuse it everywhere so
	// both drivers accept the same events.
	if containsNULEscape(e.Payload) {
		return fmt.Errorf("%w: payload contains a NUL character (\\u0000)", ErrInvalidEvent)
	}
	for k, v := range e.Headers {
		if !utf8.ValidString(k) || !utf8.ValidString(v) || strings.ContainsRune(k+v, 0) {
			return fmt.Errorf("%w: header %q must be valid UTF-8 without NUL characters", ErrInvalidEvent, k)
		}
	}
	return nil
}

// Record is an event as it sits in the outbox, with the bookkeeping the
// relay keeps on it.
type Record struct {
	Event
	// Sequence is the event's position within its aggregate: 1, 2, 3… in
	// commit order, without gaps among committed events.
	Sequence      int64
	Attempts      int
	LastError     string
	CreatedAt     time.Time
	FirstFailedAt time.Time // zero until the first failed attempt
}

// Enqueued tells the caller what the outbox assigned to an event.
type Enqueued struct {
	ID       uuid.UUID
	Sequence int64
}

// containsNULEscape reports whether JSON text b holds the escape \u0000. An
// escaped backslash followed by "u0000" is ordinary text and does not count:
// the escape is real only after an even number of backslashes before it.
func containsNULEscape(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		at := i + j
		backslashes := 0
		for k := at - 1; k >= 0 && b[k] == '\\'; k-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return true
		}
		i = at + 1
	}
}
