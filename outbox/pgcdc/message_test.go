package pgcdc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// content builds a message's content from its fields, as pgstore does.
func content(fields ...string) string {
	var b strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&b, "%d:%s,", len(f), f)
	}
	return b.String()
}

// goodFields are a message's fields, in order.
var goodFields = []string{"1", "0193a5b2-7c1e-7d3a-9f00-000000000001", "order", "o-1", "order.created",
	"3", "1796013067123456", "", `{"traceparent": "00-abc-01"}`, `{"total": 12, "note": "a, b: c"}`}

// with returns goodFields with field i replaced by v.
func with(i int, v string) []string {
	f := append([]string(nil), goodFields...)
	f[i] = v
	return f
}

func TestDecodeMessage(t *testing.T) {
	rec, err := decodeMessage([]byte(content(goodFields...)))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 30, 4, 31, 7, 123456000, time.UTC)
	if rec.ID != uuid.MustParse("0193a5b2-7c1e-7d3a-9f00-000000000001") || rec.AggregateType != "order" ||
		rec.AggregateID != "o-1" || rec.Type != "order.created" || string(rec.Payload) != goodFields[9] ||
		rec.Headers["traceparent"] != "00-abc-01" || len(rec.Headers) != 1 || rec.IdempotencyKey != "" ||
		rec.Sequence != 3 || !rec.CreatedAt.Equal(want) {
		t.Fatalf("decoded %+v", rec)
	}
	if rec, err := decodeMessage([]byte(content(with(9, "null")...))); err != nil || string(rec.Payload) != "null" {
		t.Fatalf("a null payload (valid JSON, so a valid event): %q, %v", rec.Payload, err)
	}
	if rec, err := decodeMessage([]byte(content(with(8, "{}")...))); err != nil || rec.Headers != nil {
		t.Fatalf("no headers: %v, %v", rec.Headers, err)
	}
	if rec, err := decodeMessage([]byte(content(with(7, "key, with: a comma")...))); err != nil || rec.IdempotencyKey != "key, with: a comma" {
		t.Fatalf("idempotency key: %q, %v", rec.IdempotencyKey, err)
	}
	multibyte := "crème brûlée ✓"
	if rec, err := decodeMessage([]byte(content(with(3, multibyte)...))); err != nil || rec.AggregateID != multibyte {
		t.Fatalf("multi-byte aggregate id: %q, %v", rec.AggregateID, err)
	}
}

// Content that is not an event message is refused with an error naming
// what is wrong, never decoded into a record with holes.
func TestDecodeMessageRefuses(t *testing.T) {
	good := content(goodFields...)
	for _, c := range []struct{ name, content, want string }{
		{"JSON", `{"id": 1}`, "field version: bad length"},
		{"empty", ``, "field version: no length"},
		{"a short field", strings.Replace(good, "5:order,", "6:order,", 1), "do not end in a comma"},
		{"a length with a sign", strings.Replace(good, "5:order,", "+5:order,", 1), "bad length"},
		{"a length with a leading zero", strings.Replace(good, "5:order,", "05:order,", 1), "bad length"},
		{"a field missing", content(goodFields[:9]...), "field payload"},
		{"a field too many", good + "1:x,", "bytes after the last field"},
		{"another version", content(with(0, "2")...), `format version "2"`},
		{"another version with more fields", content(append(with(0, "2"), "x")...), `format version "2"`},
		{"a bad id", content(with(1, "not-a-uuid")...), "id:"},
		{"the nil id", content(with(1, uuid.Nil.String())...), "no id"},
		{"no aggregate", content(with(3, "")...), "no aggregate_id"},
		{"no event type", content(with(4, "")...), "no event_type"},
		{"sequence 0", content(with(5, "0")...), "sequence"},
		{"a bad time", content(with(6, "2026-11-30")...), "created_at"},
		{"bad headers", content(with(8, `{"n": 1}`)...), "headers"},
		{"no payload", content(with(9, "")...), "no payload"},
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
	f.Add([]byte(content(goodFields...)))
	f.Add([]byte(content(with(8, "{}")...)))
	f.Add([]byte("1:1,"))
	f.Add([]byte("99999999999:x,"))
	f.Fuzz(func(t *testing.T, content []byte) {
		rec, err := decodeMessage(content)
		if err != nil {
			return
		}
		if rec.ID == uuid.Nil || rec.AggregateType == "" || rec.AggregateID == "" ||
			rec.Type == "" || len(rec.Payload) == 0 || rec.Sequence <= 0 {
			t.Fatalf("decoded a record with holes: %+v", rec)
		}
	})
}
