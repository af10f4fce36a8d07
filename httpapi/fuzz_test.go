package httpapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
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

// FuzzDeadLetterFilters sends dead-letter filters, as the list's query
// string and as a replay request's body: each is answered 200 or refused
// with a 4xx problem that changes nothing, never a 500. The seeds are the
// inputs of an adversarial run (a NUL was a 500 on PostgreSQL, a 200 on
// SQLite; state=all was refused by the API but not by herald dlq list).
func FuzzDeadLetterFilters(f *testing.F) {
	for _, seed := range []struct{ query, body string }{
		{"", `{"all":true}`},
		{"state=all", `{"aggregate_id":"agg-1"}`},
		{"state=open&aggregate_id=agg-1&limit=1", `{"event_type":"thing.failed","limit":1}`},
		{"aggregate_id=a%00b", `{"aggregate_id":"a\u0000b"}`},
		{"aggregate_type=order%00", `{"aggregate_type":"order\u0000"}`},
		{"event_type=%00", `{"event_type":"\u0000"}`},
		{"aggregate_type=%FF", `{"aggregate_type":"\u001b[2J"}`},
		{"aggregate_id=%ED%A0%80", `{"aggregate_id":"\ud800"}`},
		{"event_type=a%C2%85", `{"event_type":"a\u0085"}`},
		{"state=ALL", `{"state":"all","all":true}`},
		{"after=-9223372036854775808", `{"limit":-9223372036854775808,"all":true}`},
		{"after=9223372036854775807&limit=500", `{"limit":9223372036854775807,"all":true}`},
		{"after=0", `{"limit":0,"aggregate_id":""}`},
		{"aggregate_id=" + strings.Repeat("%C3%A9", 128), `{"aggregate_id":"` + strings.Repeat("é", 128) + `"}`},
	} {
		f.Add(seed.query, []byte(seed.body))
	}
	b := setup(f)
	for i := range 3 {
		b.deadLetter(f, "agg-"+strconv.Itoa(i), "thing.failed")
	}
	f.Fuzz(func(t *testing.T, query string, body []byte) {
		before := b.state(t)
		r := b.get(query, "/api/v1/outbox/dlq")
		if r.Code == 200 {
			var l ListDeadLettersResponse
			r.decode(t, 200, &l)
		} else {
			checkRefusal(t, b, r, before)
		}
		r = b.do(t, req{method: "POST", path: "/api/v1/outbox/dlq/replay", body: body})
		if r.Code == 200 {
			var rr ReplayResponse
			r.decode(t, 200, &rr)
			return
		}
		checkRefusal(t, b, r, before)
	})
}

// FuzzListOrdersCursor sends cursors of the orders list: one the service
// accepts is a position like any other (200); anything else is refused
// with a 4xx problem, never a 500. The seeds are the forged cursors of an
// adversarial run (the smallest time read as a first page on PostgreSQL,
// an empty one on SQLite).
func FuzzListOrdersCursor(f *testing.F) {
	for _, seed := range []string{
		"",
		forgedCursor(math.MinInt64),
		forgedCursor(math.MaxInt64),
		forgedCursor(0),
		forgedCursor(-1),
		strings.Repeat("A", 32),
		strings.Repeat("_", 32),
		"not-a-cursor",
		"%00",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%0A",
	} {
		f.Add(seed)
	}
	b := setup(f)
	b.createOrder(f, createBody)
	f.Fuzz(func(t *testing.T, cursor string) {
		before := b.state(t)
		r := b.get("cursor="+cursor, "/api/v1/orders")
		if r.Code == 200 {
			var p ListOrdersResponse
			r.decode(t, 200, &p)
			return
		}
		checkRefusal(t, b, r, before)
	})
}

// get sends GET path with the raw query string query, which may hold
// anything (a request line could not).
func (b *testBundle) get(query, path string) response {
	hr := httptest.NewRequestWithContext(context.Background(), "GET", path, nil)
	hr.URL.RawQuery = query
	return b.serve(hr)
}
