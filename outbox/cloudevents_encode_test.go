package outbox

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzAppendCloudEvent: the hand-written encoder writes exactly what
// json.Marshal writes for the same CloudEvent, and fails where it fails.
func FuzzAppendCloudEvent(f *testing.F) {
	f.Add("order.created", "o-1", "order", "/herald/orders", `{"a": [1, 2.5, "x<y>&z\u2028"], "b": null}`, int64(1), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "", int64(1732900000123456789))
	f.Add("t\"\\\n\t\x01<>&\u2029", "\xff\xfe", "", "", ``, int64(-5), "", "k=v", int64(0))
	f.Add("t", "a", "b", "s", `{"a":`, int64(9), "x", "y", int64(-1))
	// Raw U+2028 and U+2029 (E2 80 A8, E2 80 A9) in the payload, and a
	// truncated sequence: only the whole characters are escaped.
	f.Add("t", "a", "b", "s", "{\"a\":\"x\u2028y\u2029\"}", int64(2), "", "", int64(0))
	f.Add("t", "a", "b", "s", "{\"a\":\"x\xe2\x80\"}", int64(3), "", "", int64(0))
	f.Fuzz(func(t *testing.T, typ, aggID, aggType, source, payload string, seq int64, traceparent, tracestate string, nanos int64) {
		r := Record{
			Event: Event{
				ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(typ+aggID)), AggregateType: aggType, AggregateID: aggID, Type: typ,
				Payload: json.RawMessage(payload),
				Headers: map[string]string{"traceparent": traceparent, "tracestate": tracestate},
			},
			Sequence:  seq,
			CreatedAt: time.Unix(0, nanos).In(time.FixedZone("x", 3600)),
		}
		if payload == "" {
			r.Payload = nil
		}
		want, wantErr := json.Marshal(NewCloudEvent(&r, source))
		got, err := EncodeCloudEvent(&r, source)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("EncodeCloudEvent error %v, json.Marshal error %v", err, wantErr)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("EncodeCloudEvent =\n%s\njson.Marshal =\n%s", got, want)
		}
		if err == nil {
			if _, err := ParseCloudEvent(got); err != nil && seq >= 1 && typ != "" {
				t.Fatalf("ParseCloudEvent(%s): %v", got, err)
			}
		}
	})
}

func BenchmarkEncodeCloudEvent(b *testing.B) {
	r := Record{Event: Event{ID: uuid.New(), AggregateType: "order", AggregateID: "0192f1c2-1111-7abc-8def-0123456789ab", Type: "order.status_changed",
		Payload: []byte(`{"order_id": "0192f1c2-1111-7abc-8def-0123456789ab", "from": "pending", "to": "paid", "reason": "payment confirmed", "actor": "system", "amount": 3998, "currency": "EUR"}`),
		Headers: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}, Sequence: 3, CreatedAt: time.Now()}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := EncodeCloudEvent(&r, "/herald/orders"); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What EncodeCloudEvent did before: json.Marshal of the struct.
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(NewCloudEvent(&r, "/herald/orders")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
