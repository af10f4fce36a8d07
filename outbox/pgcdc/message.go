package pgcdc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/outbox"
)

// messageEvent is the content of the logical decoding message that carries
// an event written with pgstore.Config.WALMessages: a JSON object built by
// PostgreSQL's json_build_object in the writing transaction.
type messageEvent struct {
	ID             uuid.UUID       `json:"id"`
	AggregateType  string          `json:"aggregate_type"`
	AggregateID    string          `json:"aggregate_id"`
	EventType      string          `json:"event_type"`
	Payload        json.RawMessage `json:"payload"`
	Headers        json.RawMessage `json:"headers"`         // decoded only when not {}: most events have none
	IdempotencyKey string          `json:"idempotency_key"` // JSON null leaves it empty
	Sequence       int64           `json:"sequence"`
	CreatedAt      time.Time       `json:"created_at"`
}

// decodeMessage turns a message's content into a record. It refuses
// content that is not such an object or lacks a field an event needs.
func decodeMessage(content []byte) (outbox.Record, error) {
	var m messageEvent
	if err := json.Unmarshal(content, &m); err != nil {
		return outbox.Record{}, fmt.Errorf("event message: %w", err)
	}
	var missing []error
	for _, f := range []struct {
		name  string
		empty bool
	}{
		{"id", m.ID == uuid.Nil},
		{"aggregate_type", m.AggregateType == ""},
		{"aggregate_id", m.AggregateID == ""},
		{"event_type", m.EventType == ""},
		{"payload", len(m.Payload) == 0}, // absent; a JSON null payload is an event's own choice
		{"sequence", m.Sequence <= 0},
		{"created_at", m.CreatedAt.IsZero()},
	} {
		if f.empty {
			missing = append(missing, fmt.Errorf("no %s", f.name))
		}
	}
	if len(missing) > 0 {
		return outbox.Record{}, fmt.Errorf("event message: %w", errors.Join(missing...))
	}
	rec := outbox.Record{
		Event: outbox.Event{
			ID:            m.ID,
			AggregateType: m.AggregateType,
			AggregateID:   m.AggregateID,
			Type:          m.EventType,
			Payload:       m.Payload,
		},
		Sequence:  m.Sequence,
		CreatedAt: m.CreatedAt,
	}
	if len(m.Headers) > 0 && string(m.Headers) != "{}" && string(m.Headers) != "null" {
		if err := json.Unmarshal(m.Headers, &rec.Headers); err != nil {
			return outbox.Record{}, fmt.Errorf("event message: headers: %w", err)
		}
	}
	rec.IdempotencyKey = m.IdempotencyKey
	return rec, nil
}
