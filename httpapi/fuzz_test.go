package httpapi

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/heraldhq/herald/order"
)

// refusals are the statuses a refused order request may get.
var refusals = []int{400, 404, 409, 412, 413, 415, 422}

// checkRefusal asserts that a non-2xx response is a 4xx problem document
// and that nothing was written.
func checkRefusal(t *testing.T, b *testBundle, r response, before dbState) {
	t.Helper()
	if !slices.Contains(refusals, r.Code) {
		t.Fatalf("status %d: %s", r.Code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type %q", ct)
	}
	var p Problem
	if err := json.Unmarshal(r.Body, &p); err != nil || p.Status != r.Code || p.Type == "" || p.Detail == "" {
		t.Fatalf("problem %s: %v", r.Body, err)
	}
	b.unchanged(t, before)
}

func FuzzDecodeCreateOrder(f *testing.F) {
	valid, _ := json.Marshal(createBody)
	mixed, _ := json.Marshal(mixedBody)
	for _, seed := range []struct {
		body string
		key  string
	}{
		{string(valid), ""},
		{string(valid), "key-1"},
		{string(mixed), "key-1"},
		{string(mixed), "clé"},
		{`{}`, ""},
		{``, ""},
		{`null`, ""},
		{`[]`, ""},
		{`{"customer_id":"c","currency":"EUR","line_items":[{"product_id":"p","product_type":"digital","quantity":10000,"unit_price":1000000000000}]}`, ""},
		{`{"customer_id":"c","currency":"EUR","line_items":[{"product_id":"p","product_type":"digital","quantity":1e3,"unit_price":1}]}`, ""},
		{`{"customer_id":"c","customer_id":"d"}`, ""},
		{`{"Customer_id":"c"}`, ""},
		{`{"customer_id":"c"} {}`, ""},
		{`{"line_items":[{"quantity":-9223372036854775808}]}`, ""},
		{"{\"customer_id\":\"\xff\"}", ""},
		{`{"customer_id":"\u0000"}`, ""},
		{`{"customer_id":"c\\u0000x","currency":"EUR","line_items":[{"product_id":"p","product_type":"digital","quantity":1,"unit_price":1}]}`, ""},
		{`{"line_items":[[[[[[[[[[]]]]]]]]]]}`, ""},
	} {
		f.Add([]byte(seed.body), seed.key)
	}
	b := setup(f)
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		var hdr []string
		if key != "" {
			hdr = []string{"Idempotency-Key", key}
		}
		before := b.state(t)
		r := b.do(t, req{method: "POST", path: "/api/v1/orders", body: body, headers: hdr})
		if r.Code != 201 {
			checkRefusal(t, b, r, before)
			return
		}
		var o order.Order
		r.decode(t, 201, &o)
		after := b.state(t)
		if o.Version != 1 || o.Status != order.StatusPending || len(o.LineItems) == 0 ||
			r.Header.Get("Location") != orderPath(o) {
			t.Fatalf("created %+v", o)
		}
		// A new order writes one order; a repeat with its key writes nothing.
		if grew := after.Orders - before.Orders; grew > 1 || (grew == 0 && key == "") {
			t.Fatalf("orders went from %d to %d", before.Orders, after.Orders)
		}
	})
}

func FuzzDecodeTransition(f *testing.F) {
	for _, seed := range []struct {
		body    string
		ifMatch string
		item    bool
	}{
		{`{"to":"cancelled","reason":"customer asked"}`, "", false},
		{`{"to":"cancelled"}`, `"1"`, false},
		{`{"to":"preparing"}`, `"2"`, true},
		{`{"to":"shipped"}`, "", true},
		{`{"to":"flying"}`, "", false},
		{`{"to":5}`, "", false},
		{`{"to":"cancelled","extra":1}`, "", true},
		{`{"to":"cancelled","to":"pending"}`, "", false},
		{`{"to":"cancelled"}`, `W/"1"`, false},
		{`{"to":"cancelled"}`, `abc`, true},
		{``, "", false},
		{`{"reason":"` + string(make([]byte, 600)) + `"}`, "", true},
	} {
		f.Add([]byte(seed.body), seed.ifMatch, seed.item)
	}
	b := setup(f)
	o := b.pay(f, b.createOrder(f, mixedBody))
	orderTransitions := orderPath(o) + "/transitions"
	itemTransitions := orderPath(o) + "/line-items/" + o.LineItems[0].ID.String() + "/transitions"
	f.Fuzz(func(t *testing.T, body []byte, ifMatch string, item bool) {
		path := orderTransitions
		if item {
			path = itemTransitions
		}
		var hdr []string
		if ifMatch != "" {
			hdr = []string{"If-Match", ifMatch}
		}
		before := b.state(t)
		r := b.do(t, req{method: "POST", path: path, body: body, headers: hdr})
		if r.Code != 200 {
			checkRefusal(t, b, r, before)
			return
		}
		var got order.Order
		r.decode(t, 200, &got)
		after := b.state(t)
		if after.Orders != before.Orders || after.Transitions <= before.Transitions || after.Outbox <= before.Outbox {
			t.Fatalf("a transition wrote %+v, before %+v", after, before)
		}
	})
}
