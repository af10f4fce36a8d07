package inbox_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/heraldhq/herald/inbox"
)

// Decode either refuses a body with ErrInvalidEvent or returns an event
// that Validate accepts and that survives the inbox's own encoding (a held
// event is stored encoded and decoded when it is released).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"specversion":"1.0","id":"e1","source":"/s","type":"t","subject":"o-1","aggregatetype":"order","sequence":1,"data":{}}`,
		`{"specversion":"1.0","id":"e1","source":"/s","type":"t","subject":"","aggregatetype":"order","sequence":1}`,
		`{"specversion":"1.0","id":"e\u0000","source":"/s","type":"t","subject":"s","aggregatetype":"a","sequence":9}`,
		`{"specversion":"1.0","id":"e1","source":"/s","type":"t","subject":"s","aggregatetype":"a","sequence":-1}`,
		`{"specversion":"0.3"}`, `[]`, `null`, ``, `{"sequence":1e30}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := inbox.Decode(body)
		if err != nil {
			if !errors.Is(err, inbox.ErrInvalidEvent) {
				t.Fatalf("Decode error %v does not wrap ErrInvalidEvent", err)
			}
			return
		}
		if err := inbox.Validate(&ev); err != nil {
			t.Fatalf("Decode accepted an event Validate refuses: %v", err)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("encode a decoded event: %v", err)
		}
		back, err := inbox.Decode(again)
		if err != nil {
			t.Fatalf("a decoded event, encoded again, is refused: %v\n%s", err, again)
		}
		if back.ID != ev.ID || back.Subject != ev.Subject || back.AggregateType != ev.AggregateType || back.Sequence != ev.Sequence {
			t.Fatalf("round trip changed the keys: %+v → %+v", ev, back)
		}
	})
}
