package pgcdc

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

const goodMessage = `{"id" : "0193a5b2-7c1e-7d3a-9f00-000000000001", "aggregate_type" : "order", "aggregate_id" : "o-1",
	"event_type" : "order.created", "payload" : {"total": 12}, "headers" : {"traceparent": "00-abc-01"},
	"idempotency_key" : null, "sequence" : 3, "created_at" : "2026-11-30T04:31:07.123456+00:00"}`

func TestDecodeMessage(t *testing.T) {
	rec, err := decodeMessage([]byte(goodMessage))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 30, 4, 31, 7, 123456000, time.UTC)
	if rec.ID != uuid.MustParse("0193a5b2-7c1e-7d3a-9f00-000000000001") || rec.AggregateType != "order" ||
		rec.AggregateID != "o-1" || rec.Type != "order.created" || string(rec.Payload) != `{"total": 12}` ||
		rec.Headers["traceparent"] != "00-abc-01" || len(rec.Headers) != 1 || rec.IdempotencyKey != "" ||
		rec.Sequence != 3 || !rec.CreatedAt.Equal(want) {
		t.Fatalf("decoded %+v", rec)
	}
	nullPayload := strings.Replace(goodMessage, `{"total": 12}`, `null`, 1)
	if rec, err := decodeMessage([]byte(nullPayload)); err != nil || string(rec.Payload) != "null" {
		t.Fatalf("a null payload (valid JSON, so a valid event): %q, %v", rec.Payload, err)
	}
	noHeaders := strings.Replace(goodMessage, `{"traceparent": "00-abc-01"}`, `{}`, 1)
	if rec, err := decodeMessage([]byte(noHeaders)); err != nil || rec.Headers != nil {
		t.Fatalf("empty headers: %v, %v", rec.Headers, err)
	}
}

// Content that is not an event's object is refused with an error naming
// what is wrong, never decoded into a record with holes.
func TestDecodeMessageRefuses(t *testing.T) {
	for _, c := range []struct{ name, content, want string }{
		{"not JSON", `order created`, "invalid character"},
		{"an array", `[1, 2]`, "cannot unmarshal array"},
		{"no id", strings.Replace(goodMessage, `"0193a5b2-7c1e-7d3a-9f00-000000000001"`, `null`, 1), "no id"},
		{"a bad id", strings.Replace(goodMessage, `0193a5b2-7c1e`, `0193a5b2-7c1z`, 1), "invalid"},
		{"no aggregate", strings.Replace(goodMessage, `"o-1"`, `""`, 1), "no aggregate_id"},
		{"no payload", strings.Replace(goodMessage, `"payload" : {"total": 12},`, ``, 1), "no payload"},
		{"sequence 0", strings.Replace(goodMessage, `"sequence" : 3`, `"sequence" : 0`, 1), "no sequence"},
		{"a text sequence", strings.Replace(goodMessage, `"sequence" : 3`, `"sequence" : "3"`, 1), "cannot unmarshal string"},
		{"bad headers", strings.Replace(goodMessage, `{"traceparent": "00-abc-01"}`, `{"n": 1}`, 1), "headers"},
		{"no time", strings.Replace(goodMessage, `"2026-11-30T04:31:07.123456+00:00"`, `null`, 1), "no created_at"},
	} {
		_, err := decodeMessage([]byte(c.content))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// FuzzDecodeMessage: any content either decodes into a record with every
// field an event needs, or is refused; it never panics.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(goodMessage))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"0193a5b2-7c1e-7d3a-9f00-000000000001","headers":"x"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, content []byte) {
		rec, err := decodeMessage(content)
		if err != nil {
			return
		}
		if rec.ID == uuid.Nil || rec.AggregateType == "" || rec.AggregateID == "" || rec.Type == "" ||
			len(rec.Payload) == 0 || rec.Sequence <= 0 || rec.CreatedAt.IsZero() {
			t.Fatalf("decoded a record with holes: %+v", rec)
		}
	})
}
