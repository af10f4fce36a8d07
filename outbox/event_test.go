package outbox

import (
	"errors"
	"strings"
	"testing"
)

func TestEventValidate(t *testing.T) {
	t.Parallel()
	valid := func() Event {
		return Event{AggregateType: "order", AggregateID: "o-1", Type: "order.created", Payload: []byte(`{"a":1}`)}
	}
	cases := map[string]func(e *Event){
		"no aggregate type":      func(e *Event) { e.AggregateType = "" },
		"no aggregate id":        func(e *Event) { e.AggregateID = "" },
		"no type":                func(e *Event) { e.Type = "" },
		"long aggregate id":      func(e *Event) { e.AggregateID = strings.Repeat("x", MaxNameLen+1) },
		"long idempotency key":   func(e *Event) { e.IdempotencyKey = strings.Repeat("k", MaxNameLen+1) },
		"NUL in a name":          func(e *Event) { e.Type = "a\x00b" },
		"invalid UTF-8 name":     func(e *Event) { e.AggregateID = "\xff" },
		"payload not JSON":       func(e *Event) { e.Payload = []byte(`{"a":`) },
		"empty payload":          func(e *Event) { e.Payload = nil },
		"payload with NUL":       func(e *Event) { e.Payload = []byte(`{"a":"\u0000"}`) },
		"payload too large":      func(e *Event) { e.Payload = []byte(`"` + strings.Repeat("x", MaxPayloadLen) + `"`) },
		"header with bad UTF-8":  func(e *Event) { e.Headers = map[string]string{"traceparent": "\xff"} },
		"header name with a NUL": func(e *Event) { e.Headers = map[string]string{"a\x00": "b"} },
	}
	for name, mutate := range cases {
		e := valid()
		mutate(&e)
		if err := e.Validate(); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidEvent", name, err)
		}
	}
	for _, text := range []string{`{"a":"c\\u0000x"}`, `{"a":"\\\\u0000"}`, `"\\\\\\u0000"`} {
		e := valid()
		e.Payload = []byte(text)
		if err := e.Validate(); err != nil {
			t.Errorf("payload %s holds no NUL but was refused: %v", text, err)
		}
	}
	for _, text := range []string{`"\u0000"`, `"\\\\\u0000"`, `{"k\u0000":1}`} {
		e := valid()
		e.Payload = []byte(text)
		if err := e.Validate(); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("payload %s holds a NUL but Validate() = %v", text, err)
		}
	}
	e := valid()
	e.IdempotencyKey = strings.Repeat("k", MaxNameLen)
	e.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	if err := e.Validate(); err != nil {
		t.Fatalf("valid event refused: %v", err)
	}
}
