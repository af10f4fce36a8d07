package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
)

func TestCreateOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, req{method: "POST", path: "/api/v1/orders", body: createBody})
	var o order.Order
	r.decode(t, http.StatusCreated, &o)
	if got, want := r.Header.Get("Location"), "/api/v1/orders/"+o.ID.String(); got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if got := r.Header.Get("ETag"); got != `"1"` {
		t.Errorf("ETag %q", got)
	}
	if o.CustomerID != "c-42" || o.Currency != "EUR" || o.Status != order.StatusPending || o.TotalAmount != 3998 ||
		o.Version != 1 || o.CreatedAt.IsZero() || !o.UpdatedAt.Equal(o.CreatedAt) {
		t.Errorf("order %+v", o)
	}
	if len(o.LineItems) != 1 {
		t.Fatalf("line items %+v", o.LineItems)
	}
	li := o.LineItems[0]
	if li.ID.Version() != 7 || li.ProductID != "p-1" || li.ProductType != order.ProductPhysical || li.Quantity != 2 ||
		li.UnitPrice != 1999 || li.Status != order.StatusPending {
		t.Errorf("line item %+v", li)
	}
	if s := b.state(t); s.Orders != 1 || s.LineItems != 1 || s.Transitions != 1 || s.Outbox != 1 {
		t.Errorf("state %+v, want one order, item, audit row and event", s)
	}

	// The Location serves the same order.
	var got order.Order
	g := b.do(t, req{method: "GET", path: r.Header.Get("Location")})
	g.decode(t, 200, &got)
	if got.ID != o.ID || got.Version != 1 || got.TotalAmount != 3998 || len(got.LineItems) != 1 || g.Header.Get("ETag") != `"1"` {
		t.Errorf("GET %+v", got)
	}
}

func TestCreateOrderValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/orders"
	item := func(kv ...any) map[string]any {
		m := map[string]any{"product_id": "p-1", "product_type": "physical", "quantity": 1, "unit_price": 100}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = item()
	}
	for _, tc := range []struct {
		name   string
		body   map[string]any
		fields map[string]string
	}{
		{"empty object", map[string]any{}, map[string]string{
			"customer_id": "is required", "currency": "is required", "line_items": "must have at least 1 line item"}},
		{"bad currency and items", map[string]any{"customer_id": "c", "currency": "eur", "line_items": []any{
			item("quantity", 0, "unit_price", -1), item("product_type", "boat", "product_id", ""),
		}}, map[string]string{
			"currency":                   "must be three upper-case letters (ISO 4217)",
			"line_items[0].quantity":     "must be between 1 and 10000",
			"line_items[0].unit_price":   "must be between 0 and 1000000000000",
			"line_items[1].product_type": "must be one of physical, digital, service",
			"line_items[1].product_id":   "is required",
		}},
		{"unknown currency", map[string]any{"customer_id": "c", "currency": "XYZ", "line_items": []any{item()}},
			map[string]string{"currency": "is not an ISO 4217 currency code"}},
		{"quantity too large", map[string]any{"customer_id": "c", "currency": "EUR", "line_items": []any{item("quantity", 10001)}},
			map[string]string{"line_items[0].quantity": "must be between 1 and 10000"}},
		{"too many items", map[string]any{"customer_id": "c", "currency": "EUR", "line_items": many},
			map[string]string{"line_items": "must have at most 100 line items, has 101"}},
		{"long customer id", map[string]any{"customer_id": strings.Repeat("x", 129), "currency": "EUR", "line_items": []any{item()}},
			map[string]string{"customer_id": "must be at most 128 characters"}},
		{"customer id with spaces", map[string]any{"customer_id": " c ", "currency": "EUR", "line_items": []any{item()}},
			map[string]string{"customer_id": "must not begin or end with white space"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.state(t)
			p := b.do(t, req{method: "POST", path: path, body: tc.body}).problem(t, 422, order.EINVALID, path)
			if got := p.fields(); !equalMaps(got, tc.fields) {
				t.Errorf("errors %v\nwant   %v", got, tc.fields)
			}
			if p.Detail != "The order is invalid." || p.Allowed != nil {
				t.Errorf("problem %+v", p)
			}
			b.unchanged(t, before)
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCreateOrderIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/orders"
	first := b.do(t, req{method: "POST", path: path, body: createBody, headers: []string{"Idempotency-Key", "key-1"}})
	var o1, o2 order.Order
	first.decode(t, 201, &o1)
	before := b.state(t)

	again := b.do(t, req{method: "POST", path: path, body: createBody, headers: []string{"Idempotency-Key", "key-1"}})
	again.decode(t, 201, &o2)
	if o2.ID != o1.ID || o2.Version != 1 || again.Header.Get("Location") != first.Header.Get("Location") {
		t.Errorf("repeat returned %+v, want order %s", o2, o1.ID)
	}
	b.unchanged(t, before)

	p := b.do(t, req{method: "POST", path: path, body: mixedBody, headers: []string{"Idempotency-Key", "key-1"}}).
		problem(t, 409, order.ECONFLICT, path)
	if p.Detail != "The Idempotency-Key was already used for a different request." || p.Allowed != nil {
		t.Errorf("problem %+v", p)
	}
	b.unchanged(t, before)

	for _, tc := range []struct {
		headers []string
		detail  string
	}{
		{[]string{"Idempotency-Key", strings.Repeat("k", MaxIdempotencyKeyLen+1)}, "The Idempotency-Key header must be at most 128 characters."},
		{[]string{"Idempotency-Key", "clé"}, "The Idempotency-Key header must be printable ASCII without leading or trailing spaces."},
		{[]string{"Idempotency-Key", "a\x01b"}, "The Idempotency-Key header must be printable ASCII without leading or trailing spaces."},
		{[]string{"Idempotency-Key", ""}, "The Idempotency-Key header must not be empty."},
		{[]string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, "The Idempotency-Key header must be given once."},
	} {
		p := b.do(t, req{method: "POST", path: path, body: createBody, headers: tc.headers}).problem(t, 400, eBadRequest, path)
		if p.Detail != tc.detail {
			t.Errorf("%q: detail %q, want %q", tc.headers, p.Detail, tc.detail)
		}
		b.unchanged(t, before)
	}
	// The longest key is fine.
	b.do(t, req{method: "POST", path: path, body: createBody,
		headers: []string{"Idempotency-Key", strings.Repeat("k", MaxIdempotencyKeyLen)}}).decode(t, 201, &o2)
	if o2.ID == o1.ID {
		t.Error("a new key returned the old order")
	}
}

func TestGetOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.createOrder(t, mixedBody)
	var got order.Order
	r := b.do(t, req{method: "GET", path: orderPath(o)})
	r.decode(t, 200, &got)
	if got.ID != o.ID || got.TotalAmount != 1800 || len(got.LineItems) != 3 || r.Header.Get("ETag") != `"1"` {
		t.Errorf("order %+v, ETag %q", got, r.Header.Get("ETag"))
	}
	for i, pt := range []order.ProductType{order.ProductPhysical, order.ProductDigital, order.ProductService} {
		if got.LineItems[i].ProductType != pt || got.LineItems[i].ID != o.LineItems[i].ID {
			t.Errorf("line item %d: %+v", i, got.LineItems[i])
		}
	}
	// A conditional GET with the current ETag is a 304 without a body.
	for _, inm := range []string{`"1"`, `W/"1"`, `"7", "1"`, `*`} {
		nm := b.do(t, req{method: "GET", path: orderPath(o), headers: []string{"If-None-Match", inm}})
		if nm.Code != 304 || len(nm.Body) != 0 || nm.Header.Get("ETag") != `"1"` {
			t.Errorf("If-None-Match %s: %d %q %s", inm, nm.Code, nm.Header.Get("ETag"), nm.Body)
		}
	}
	if r := b.do(t, req{method: "GET", path: orderPath(o), headers: []string{"If-None-Match", `"2"`}}); r.Code != 200 {
		t.Errorf("stale If-None-Match: %d", r.Code)
	}
	unknown := "/api/v1/orders/" + newUUID(t).String()
	p := b.do(t, req{method: "GET", path: unknown}).problem(t, 404, order.ENOTFOUND, unknown)
	if !strings.HasPrefix(p.Detail, "Order ") || !strings.HasSuffix(p.Detail, " not found.") {
		t.Errorf("detail %q", p.Detail)
	}
}

func TestListOrders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/orders"
	var page ListOrdersResponse
	b.do(t, req{method: "GET", path: path}).decode(t, 200, &page)
	if page.Orders == nil || len(page.Orders) != 0 || page.NextCursor != "" {
		t.Errorf("empty list %+v", page)
	}
	if r := b.do(t, req{method: "GET", path: path}); string(r.Body) != "{\"orders\":[]}\n" {
		t.Errorf("empty list body %s", r.Body)
	}

	o1 := b.createOrder(t, createBody) // c-42
	o2 := b.createOrder(t, mixedBody)  // c-7
	o3 := b.createOrder(t, createBody) // c-42
	b.pay(t, o3)

	ids := func(p ListOrdersResponse) []string {
		var out []string
		for _, o := range p.Orders {
			out = append(out, o.ID.String())
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
		more  bool
	}{
		{"", []string{o3.ID.String(), o2.ID.String(), o1.ID.String()}, false},
		{"?customer_id=c-42", []string{o3.ID.String(), o1.ID.String()}, false},
		{"?status=pending", []string{o2.ID.String(), o1.ID.String()}, false},
		{"?status=payment_confirmed&customer_id=c-42", []string{o3.ID.String()}, false},
		{"?customer_id=nobody", nil, false},
		{"?limit=2", []string{o3.ID.String(), o2.ID.String()}, true},
		{"?status=", []string{o3.ID.String(), o2.ID.String(), o1.ID.String()}, false},
	} {
		var p ListOrdersResponse
		b.do(t, req{method: "GET", path: path + tc.query}).decode(t, 200, &p)
		if !slices.Equal(ids(p), tc.want) || (p.NextCursor != "") != tc.more {
			t.Errorf("%s: %v next %q, want %v (more %v)", tc.query, ids(p), p.NextCursor, tc.want, tc.more)
		}
	}

	// Walk the pages.
	var first, second ListOrdersResponse
	b.do(t, req{method: "GET", path: path + "?limit=2"}).decode(t, 200, &first)
	b.do(t, req{method: "GET", path: path + "?limit=2&cursor=" + first.NextCursor}).decode(t, 200, &second)
	if !slices.Equal(ids(second), []string{o1.ID.String()}) || second.NextCursor != "" {
		t.Errorf("second page %v next %q", ids(second), second.NextCursor)
	}
	if second.Orders[0].Version != 1 || len(second.Orders[0].LineItems) != 1 {
		t.Errorf("listed order %+v", second.Orders[0])
	}

	for _, tc := range []struct {
		query  string
		fields map[string]string
	}{
		{"?limit=0", map[string]string{"limit": "must be an integer between 1 and 100"}},
		{"?limit=101", map[string]string{"limit": "must be an integer between 1 and 100"}},
		{"?limit=ten", map[string]string{"limit": "must be an integer between 1 and 100"}},
		{"?status=shipped", map[string]string{"status": "must be one of pending, payment_confirmed, processing, completed, cancelled"}},
		{"?status=x&limit=-1", map[string]string{
			"status": "must be one of pending, payment_confirmed, processing, completed, cancelled",
			"limit":  "must be an integer between 1 and 100"}},
		{"?limit=1&limit=2", map[string]string{"limit": "must be given at most once"}},
		{"?customer_id=" + strings.Repeat("c", 129), map[string]string{"customer_id": "must be at most 128 characters"}},
		{"?customer_id=a%00b", map[string]string{"customer_id": "must not contain control characters"}},
		{"?cursor=not-a-cursor", map[string]string{"cursor": "is not a cursor this service issued"}},
		// Forged cursors whose time no order has: the smallest and largest
		// the encoding holds (PostgreSQL read the first as a first page,
		// SQLite as an empty one), and the years just outside 1-9999.
		{"?cursor=" + forgedCursor(math.MinInt64), map[string]string{"cursor": "is not a cursor this service issued"}},
		{"?cursor=" + forgedCursor(math.MaxInt64), map[string]string{"cursor": "is not a cursor this service issued"}},
		{"?cursor=" + forgedCursor(time.Date(0, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()), map[string]string{"cursor": "is not a cursor this service issued"}},
		{"?cursor=" + forgedCursor(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()), map[string]string{"cursor": "is not a cursor this service issued"}},
		{"?cursor=" + first.NextCursor + "A", map[string]string{"cursor": "is not a cursor this service issued"}},
		{"?cursor=" + first.NextCursor[:31] + "%0A", map[string]string{"cursor": "must not contain control characters"}},
		{"?cursor=" + first.NextCursor[:31] + "=", map[string]string{"cursor": "is not a cursor this service issued"}},
		{"?cursor=" + strings.NewReplacer("-", "+", "_", "/").Replace(forgedCursor(-1)), map[string]string{"cursor": "is not a cursor this service issued"}},
	} {
		p := b.do(t, req{method: "GET", path: path + tc.query}).problem(t, 422, order.EINVALID, path)
		if got := p.fields(); !equalMaps(got, tc.fields) {
			t.Errorf("%s: errors %v, want %v", tc.query, got, tc.fields)
		}
	}
	// A cursor the service accepts is a position in the list like any
	// other, whoever made it: the first and last instants it may hold.
	for _, tc := range []struct {
		cursor string
		want   []string
	}{
		{forgedCursor(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()), nil},
		{forgedCursor(0), nil},
		{strings.Repeat("A", 32), nil}, // the unix epoch, the nil id
		{forgedCursor(time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()), []string{o3.ID.String(), o2.ID.String(), o1.ID.String()}},
	} {
		var p ListOrdersResponse
		b.do(t, req{method: "GET", path: path + "?cursor=" + tc.cursor}).decode(t, 200, &p)
		if !slices.Equal(ids(p), tc.want) || p.NextCursor != "" {
			t.Errorf("cursor %s: %v next %q, want %v", tc.cursor, ids(p), p.NextCursor, tc.want)
		}
	}
	for query, detail := range map[string]string{
		"?sort=asc":        `Unknown query parameter "sort"; known: status, customer_id, cursor, limit.`,
		"?Status=pending":  `Unknown query parameter "Status"; known: status, customer_id, cursor, limit.`,
		"?status=%zz":      "The query string is malformed.",
		"?status=a;limit=": "The query string is malformed.",
	} {
		p := b.do(t, req{method: "GET", path: path + query}).problem(t, 400, eBadRequest, path)
		if p.Detail != detail {
			t.Errorf("%s: detail %q, want %q", query, p.Detail, detail)
		}
	}
}

func TestConfirmPayment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.createOrder(t, mixedBody)
	path := orderPath(o) + "/payment-confirmation"
	pay := map[string]any{"payment_id": "pay_1", "amount": 1800, "currency": "USD"}
	before := b.state(t)

	// Refused requests write nothing.
	p := b.do(t, req{method: "POST", path: path, body: map[string]any{"payment_id": "pay_1", "amount": 1799, "currency": "USD"}}).
		problem(t, 422, order.EINVALID, path)
	if len(p.Errors) == 0 || p.Errors[0].Field != "amount" {
		t.Errorf("amount mismatch: %+v", p)
	}
	p = b.do(t, req{method: "POST", path: path, body: map[string]any{"payment_id": "", "amount": -1, "currency": "usd"}}).
		problem(t, 422, order.EINVALID, path)
	if want := map[string]string{"payment_id": "is required", "amount": "must not be negative",
		"currency": "must be three upper-case letters (ISO 4217)"}; !equalMaps(p.fields(), want) {
		t.Errorf("errors %v, want %v", p.fields(), want)
	}
	p = b.do(t, req{method: "POST", path: path, body: pay, headers: []string{"If-Match", `"2"`}}).
		problem(t, 412, order.EPRECONDITION, path)
	if p.Detail != fmt.Sprintf("Order %s is at version 1, not 2.", o.ID) {
		t.Errorf("detail %q", p.Detail)
	}
	unknown := "/api/v1/orders/" + newUUID(t).String() + "/payment-confirmation"
	b.do(t, req{method: "POST", path: unknown, body: pay}).problem(t, 404, order.ENOTFOUND, unknown)
	b.unchanged(t, before)

	// The payment, conditional on version 1, with a key.
	r := b.do(t, req{method: "POST", path: path, body: pay, headers: []string{"If-Match", `"1"`, "Idempotency-Key", "pay-key"}})
	var paid order.Order
	r.decode(t, 200, &paid)
	if paid.Status != order.StatusPaymentConfirmed || paid.Version != 2 || r.Header.Get("ETag") != `"2"` {
		t.Errorf("paid %+v ETag %q", paid, r.Header.Get("ETag"))
	}
	for _, li := range paid.LineItems {
		if li.Status != order.StatusPaymentConfirmed {
			t.Errorf("line item %+v", li)
		}
	}
	after := b.state(t)
	// order.payment_confirmed, order.status_changed, one line_item.status_changed per item.
	if after.Outbox != before.Outbox+5 || after.Transitions != before.Transitions+4 {
		t.Errorf("state %+v after %+v", after, before)
	}

	// The same request with the same key returns the same result.
	var again order.Order
	b.do(t, req{method: "POST", path: path, body: pay, headers: []string{"Idempotency-Key", "pay-key"}}).decode(t, 200, &again)
	if again.Version != 2 || again.Status != order.StatusPaymentConfirmed {
		t.Errorf("repeat %+v", again)
	}
	b.unchanged(t, after)

	// Without the key it is a second payment: the order is not pending.
	p = b.do(t, req{method: "POST", path: path, body: pay}).problem(t, 409, order.ECONFLICT, path)
	if !strings.Contains(p.Detail, "payment_confirmed") {
		t.Errorf("detail %q", p.Detail)
	}
	b.unchanged(t, after)
}

func TestIfMatchHeader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.createOrder(t, createBody)
	path := orderPath(o) + "/transitions"
	before := b.state(t)
	for _, tc := range []struct {
		values []string
		detail string
	}{
		{[]string{"abc"}, "must be a single version number"},
		{[]string{`"1", "2"`}, "must be a single version number"},
		{[]string{`W/"1"`}, "must not be a weak entity tag"},
		{[]string{`"0"`}, "must be a single version number"},
		{[]string{`-1`}, "must be a single version number"},
		{[]string{`"01"`}, "must be a single version number"},
		{[]string{`""`}, "must be a single version number"},
		{[]string{`"1`}, "must be a single version number"},
		{[]string{`1`, `1`}, "must be given once"},
	} {
		var hdr []string
		for _, v := range tc.values {
			hdr = append(hdr, "If-Match", v)
		}
		p := b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "cancelled"}, headers: hdr}).
			problem(t, 400, eBadRequest, path)
		if want := "The If-Match header " + tc.detail + `; send the order's ETag, e.g. If-Match: "3".`; p.Detail != want {
			t.Errorf("%q: detail %q, want %q", tc.values, p.Detail, want)
		}
	}
	b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "cancelled"}, headers: []string{"If-Match", "5"}}).
		problem(t, 412, order.EPRECONDITION, path)
	b.unchanged(t, before)

	// A bare version and "*" both work.
	var got order.Order
	b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "cancelled"}, headers: []string{"If-Match", "1"}}).
		decode(t, 200, &got)
	if got.Version != 2 || got.Status != order.StatusCancelled {
		t.Errorf("order %+v", got)
	}
	o2 := b.createOrder(t, createBody)
	b.do(t, req{method: "POST", path: orderPath(o2) + "/transitions", body: map[string]any{"to": "cancelled"},
		headers: []string{"If-Match", "*"}}).decode(t, 200, &got)
	if got.Version != 2 {
		t.Errorf("order %+v", got)
	}
}

func TestTransitionOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.createOrder(t, mixedBody)
	path := orderPath(o) + "/transitions"
	before := b.state(t)

	p := b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "completed"}}).problem(t, 409, order.ECONFLICT, path)
	if !slices.Equal(p.Allowed, []order.Status{order.StatusCancelled}) {
		t.Errorf("allowed %v", p.Allowed)
	}
	if p.Detail != "Order cannot move from pending to completed by request: the state machine has no such transition." {
		t.Errorf("detail %q", p.Detail)
	}
	p = b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "flying", "reason": strings.Repeat("r", 501)}}).
		problem(t, 422, order.EINVALID, path)
	if want := map[string]string{"to": "is not a known status", "reason": "must be at most 500 characters"}; !equalMaps(p.fields(), want) {
		t.Errorf("errors %v, want %v", p.fields(), want)
	}
	b.do(t, req{method: "POST", path: path, body: map[string]any{}}).problem(t, 422, order.EINVALID, path)
	b.do(t, req{method: "POST", path: path, body: map[string]any{"to": 5}}).problem(t, 400, eBadRequest, path)
	b.do(t, req{method: "POST", path: path}).problem(t, 400, eBadRequest, path)
	b.unchanged(t, before)

	var got order.Order
	r := b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "cancelled", "reason": "customer asked"}})
	r.decode(t, 200, &got)
	if got.Status != order.StatusCancelled || got.Version != 2 || r.Header.Get("ETag") != `"2"` {
		t.Errorf("order %+v", got)
	}
	for _, li := range got.LineItems {
		if li.Status != order.StatusCancelled {
			t.Errorf("line item %+v", li)
		}
	}

	// Cancelled is terminal: allowed is present and empty.
	after := b.state(t)
	r = b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "cancelled"}})
	p = r.problem(t, 409, order.ECONFLICT, path)
	if p.Allowed == nil || len(p.Allowed) != 0 || !strings.Contains(string(r.Body), `"allowed":[]`) {
		t.Errorf("allowed %v in %s", p.Allowed, r.Body)
	}
	b.unchanged(t, after)
}

func TestTransitionLineItem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.pay(t, b.createOrder(t, mixedBody))
	physical, digital := o.LineItems[0], o.LineItems[1]
	path := orderPath(o) + "/line-items/" + physical.ID.String() + "/transitions"
	before := b.state(t)

	p := b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "shipped"}}).problem(t, 409, order.ECONFLICT, path)
	if !slices.Equal(p.Allowed, []order.Status{order.StatusPreparing, order.StatusCancelled}) {
		t.Errorf("allowed %v", p.Allowed)
	}
	unknownItem := orderPath(o) + "/line-items/" + newUUID(t).String() + "/transitions"
	b.do(t, req{method: "POST", path: unknownItem, body: map[string]any{"to": "preparing"}}).problem(t, 404, order.ENOTFOUND, unknownItem)
	unknownOrder := "/api/v1/orders/" + newUUID(t).String() + "/line-items/" + physical.ID.String() + "/transitions"
	b.do(t, req{method: "POST", path: unknownOrder, body: map[string]any{"to": "preparing"}}).problem(t, 404, order.ENOTFOUND, unknownOrder)
	b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "preparing"}, headers: []string{"If-Match", `"1"`}}).
		problem(t, 412, order.EPRECONDITION, path)
	b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "preparing", "extra": 1}}).problem(t, 400, eBadRequest, path)
	b.unchanged(t, before)

	var got order.Order
	r := b.do(t, req{method: "POST", path: path, body: map[string]any{"to": "preparing"}, headers: []string{"If-Match", `"2"`}})
	r.decode(t, 200, &got)
	// The first item past payment_confirmed moves the order to processing.
	if got.Status != order.StatusProcessing || got.Version != 3 || got.LineItems[0].Status != order.StatusPreparing ||
		got.LineItems[1].Status != order.StatusPaymentConfirmed || r.Header.Get("ETag") != `"3"` {
		t.Errorf("order %+v", got)
	}
	digitalPath := orderPath(o) + "/line-items/" + digital.ID.String() + "/transitions"
	b.do(t, req{method: "POST", path: digitalPath, body: map[string]any{"to": "refund_requested", "reason": "changed mind"}}).
		decode(t, 200, &got)
	if got.LineItems[1].Status != order.StatusRefundRequested || got.Version != 4 {
		t.Errorf("order %+v", got)
	}
}

func TestListTransitions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.pay(t, b.createOrder(t, createBody))
	path := orderPath(o) + "/transitions"
	var resp ListTransitionsResponse
	b.do(t, req{method: "GET", path: path}).decode(t, 200, &resp)
	ts := resp.Transitions
	if len(ts) != 3 {
		t.Fatalf("%d transitions: %+v", len(ts), ts)
	}
	type row struct {
		from, to order.Status
		item     bool
	}
	want := []row{{"", order.StatusPending, false}, {order.StatusPending, order.StatusPaymentConfirmed, false},
		{order.StatusPending, order.StatusPaymentConfirmed, true}}
	for i, tr := range ts {
		got := row{tr.From, tr.To, tr.LineItemID != nil}
		if got != want[i] || tr.OrderID != o.ID || tr.Actor != ActorAnonymous || tr.EventID.Version() != 7 {
			t.Errorf("transition %d: %+v, want %+v", i, tr, want[i])
		}
		if i > 0 && (tr.ID <= ts[i-1].ID || tr.CreatedAt.Before(ts[i-1].CreatedAt)) {
			t.Errorf("transition %d is not after %d", i, i-1)
		}
	}
	if *ts[2].LineItemID != o.LineItems[0].ID {
		t.Errorf("line item %s", ts[2].LineItemID)
	}
	unknown := "/api/v1/orders/" + newUUID(t).String() + "/transitions"
	b.do(t, req{method: "GET", path: unknown}).problem(t, 404, order.ENOTFOUND, unknown)
}

// Text that merely looks like a NUL escape (an escaped backslash, then
// "u0000") is ordinary input and must be stored; a real NUL is refused with
// a 422 and nothing written (G8).
func TestNULLookalikeIsAcceptedAndRealNULRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"customer_id":"c\\u0000x","currency":"EUR","line_items":[{"product_id":"p","product_type":"digital","quantity":1,"unit_price":1}]}`
	var o order.Order
	b.do(t, req{method: "POST", path: "/api/v1/orders", body: body}).decode(t, http.StatusCreated, &o)
	if o.CustomerID != `c\u0000x` {
		t.Fatalf("customer_id = %q, want the literal text c\\u0000x", o.CustomerID)
	}
	before := b.state(t)
	r := b.do(t, req{method: "POST", path: "/api/v1/orders", body: strings.Replace(body, `c\\u0000x`, `c\u0000x`, 1)})
	if r.Code != http.StatusUnprocessableEntity && r.Code != http.StatusBadRequest {
		t.Fatalf("a real NUL in customer_id: status %d, want 400 or 422: %s", r.Code, r.Body)
	}
	b.unchanged(t, before)
}

// forgedCursor is a cursor of the orders list that no order issued: the
// time in unix microseconds, then the largest id.
func forgedCursor(micros int64) string {
	id := uuid.UUID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	return ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.UnixMicro(micros), ID: id})
}
