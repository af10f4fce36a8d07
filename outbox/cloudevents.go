package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CloudEvent is the wire form of an event: a CloudEvents 1.0 structured JSON
// document with Herald's extensions.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	AggregateType   string          `json:"aggregatetype"`
	Sequence        int64           `json:"sequence"`
	TraceParent     string          `json:"traceparent,omitempty"`
	TraceState      string          `json:"tracestate,omitempty"`
}

// NewCloudEvent builds the wire form of r.
func NewCloudEvent(r *Record, source string) CloudEvent {
	if source == "" {
		source = DefaultSource
	}
	return CloudEvent{
		SpecVersion:     "1.0",
		ID:              r.ID.String(),
		Source:          source,
		Type:            r.Type,
		Subject:         r.AggregateID,
		Time:            r.CreatedAt.UTC(),
		DataContentType: "application/json",
		Data:            r.Payload,
		AggregateType:   r.AggregateType,
		Sequence:        r.Sequence,
		TraceParent:     r.Headers["traceparent"],
		TraceState:      r.Headers["tracestate"],
	}
}

// EncodeCloudEvent renders r as CloudEvents JSON.
func EncodeCloudEvent(r *Record, source string) ([]byte, error) {
	return json.Marshal(NewCloudEvent(r, source))
}

// ParseCloudEvent decodes and checks a CloudEvents document produced by
// Herald. Consumers (herald tail, herald bench, tests) use it.
func ParseCloudEvent(b []byte) (CloudEvent, error) {
	var ce CloudEvent
	if err := json.Unmarshal(b, &ce); err != nil {
		return CloudEvent{}, fmt.Errorf("cloudevent: %w", err)
	}
	switch {
	case ce.SpecVersion != "1.0":
		return CloudEvent{}, fmt.Errorf("cloudevent: specversion %q, want 1.0", ce.SpecVersion)
	case ce.ID == "" || ce.Source == "" || ce.Type == "":
		return CloudEvent{}, errors.New("cloudevent: id, source and type are required")
	case ce.Sequence < 1:
		return CloudEvent{}, fmt.Errorf("cloudevent: sequence %d, want >= 1", ce.Sequence)
	}
	return ce, nil
}
