// Package ordersvctest is the conformance suite every ordersvc.Store runs:
// it drives an ordersvc.Service on the store and checks what lands in the
// database — orders, line items, audit rows, outbox events and their
// sequences, idempotency keys — with concrete values.
package ordersvctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// Harness is what a store gives the suite: a migrated store on a database
// of its own, and ways to look at that database.
type Harness struct {
	Store ordersvc.Store
	// Outbox returns the events of the order's aggregate in order_outbox,
	// by sequence.
	Outbox func(t testing.TB, orderID uuid.UUID) []OutboxEvent
	// Count returns the number of rows of a table.
	Count func(t testing.TB, table string) int64
}

// OutboxEvent is a row of order_outbox.
type OutboxEvent struct {
	ID            uuid.UUID
	AggregateType string
	AggregateID   string
	Type          string
	Sequence      int64
	Payload       json.RawMessage
	Headers       map[string]string
}

// Tables the suite counts rows of.
var tables = []string{"orders", "order_line_items", "order_status_transitions", "order_idempotency_keys", "order_outbox"}

// Run runs the suite. setup returns a fresh, migrated store for each test.
func Run(t *testing.T, setup func(t testing.TB) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b *bundle)
	}{
		{"CreateOrder", testCreateOrder},
		{"CreateOrderInvalid", testCreateOrderInvalid},
		{"TraceContextIsAdvisory", testTraceContextIsAdvisory},
		{"NotFound", testNotFound},
		{"ListOrders", testListOrders},
		{"ListOrdersInvalid", testListOrdersInvalid},
		{"ConfirmPayment", testConfirmPayment},
		{"ConfirmPaymentRefused", testConfirmPaymentRefused},
		{"LineItemTransitionsAndAutomatic", testLineItemTransitions},
		{"TransitionRefused", testTransitionRefused},
		{"CancelOrder", testCancelOrder},
		{"AutomaticCancellation", testAutomaticCancellation},
		{"IfMatch", testIfMatch},
		{"IdempotentCreate", testIdempotentCreate},
		{"IdempotentPayment", testIdempotentPayment},
		{"IdempotentConcurrent", testIdempotentConcurrent},
		{"ConcurrentRequestsOnOneOrder", testConcurrentRequests},
		{"SchemaStatuses", testSchemaStatuses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := setup(t)
			clk := &Clock{now: time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC)}
			b := &bundle{
				Harness: h,
				clock:   clk,
				svc:     ordersvc.New(h.Store, ordersvc.Config{Now: clk.Now}),
			}
			tt.fn(t, b)
		})
	}
}

// bundle is what each test works with.
type bundle struct {
	Harness
	clock *Clock
	svc   *ordersvc.Service
}

// Clock is a settable test clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const actor = "alice"

var opts = order.RequestOptions{Actor: actor}

func item(pt order.ProductType, qty, price int64) order.CreateLineItem {
	return order.CreateLineItem{ProductID: "p-" + string(pt), ProductType: pt, Quantity: qty, UnitPrice: price}
}

// standardRequest is an order of one item of each product type, total 4498.
func standardRequest(customer string) order.CreateOrder {
	return order.CreateOrder{CustomerID: customer, Currency: "EUR", LineItems: []order.CreateLineItem{
		item(order.ProductPhysical, 2, 1999),
		item(order.ProductDigital, 1, 500),
		item(order.ProductService, 3, 0),
	}}
}

func (b *bundle) create(t testing.TB, req order.CreateOrder) order.Order {
	t.Helper()
	o, err := b.svc.CreateOrder(context.Background(), req, opts)
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return o
}

func (b *bundle) pay(t testing.TB, o order.Order) order.Order {
	t.Helper()
	p, err := b.svc.ConfirmPayment(context.Background(), o.ID,
		order.ConfirmPayment{PaymentID: "pay-" + o.ID.String()[:8], Amount: o.TotalAmount, Currency: o.Currency}, opts)
	if err != nil {
		t.Fatalf("ConfirmPayment: %v", err)
	}
	return p
}

func (b *bundle) moveItem(t testing.TB, o order.Order, i int, to order.Status) order.Order {
	t.Helper()
	n, err := b.svc.TransitionLineItem(context.Background(), o.ID, o.LineItems[i].ID, order.TransitionRequest{To: to}, opts)
	if err != nil {
		t.Fatalf("TransitionLineItem(item %d → %s): %v", i, to, err)
	}
	return n
}

func (b *bundle) get(t testing.TB, id uuid.UUID) order.Order {
	t.Helper()
	o, err := b.svc.GetOrder(context.Background(), id)
	if err != nil {
		t.Fatalf("GetOrder: %v", err)
	}
	return o
}

func (b *bundle) trail(t testing.TB, id uuid.UUID) []order.Transition {
	t.Helper()
	ts, err := b.svc.ListTransitions(context.Background(), id)
	if err != nil {
		t.Fatalf("ListTransitions: %v", err)
	}
	return ts
}

// counts returns the row count of every table.
func (b *bundle) counts(t testing.TB) map[string]int64 {
	t.Helper()
	m := make(map[string]int64, len(tables))
	for _, tb := range tables {
		m[tb] = b.Count(t, tb)
	}
	return m
}

func (b *bundle) wantCounts(t testing.TB, want map[string]int64) {
	t.Helper()
	if got := b.counts(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("row counts = %v, want %v", got, want)
	}
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := order.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func wantFields(t testing.TB, err error, fields ...string) {
	t.Helper()
	var got []string
	for _, f := range order.ErrorFields(err) {
		got = append(got, f.Field)
	}
	if !slices.Equal(got, fields) {
		t.Fatalf("error fields = %v, want %v (%v)", got, fields, err)
	}
}

func wantJSONEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func statuses(o order.Order) []order.Status {
	out := []order.Status{o.Status}
	for _, li := range o.LineItems {
		out = append(out, li.Status)
	}
	return out
}

func eventTypes(evs []OutboxEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%d:%s", e.Sequence, e.Type)
	}
	return out
}

// trailLine renders an audit row as "item#i from→to" or "order from→to",
// with "(auto)" for an automatic one.
func trailLines(o order.Order, ts []order.Transition) []string {
	out := make([]string, len(ts))
	for i, tr := range ts {
		who := "order"
		if tr.LineItemID != nil {
			who = "item?"
			for j, li := range o.LineItems {
				if li.ID == *tr.LineItemID {
					who = fmt.Sprintf("item%d", j)
				}
			}
		}
		s := fmt.Sprintf("%s %s→%s", who, tr.From, tr.To)
		if tr.Automatic {
			s += " (auto)"
		}
		out[i] = s
	}
	return out
}

func decode[T any](t testing.TB, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

func testCreateOrder(t *testing.T, b *bundle) {
	ctx := ordersvc.ContextWithTraceContext(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x")
	created := b.clock.Now()
	o, err := b.svc.CreateOrder(ctx, standardRequest("c-42"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if o.ID.Version() != 7 || o.CustomerID != "c-42" || o.Currency != "EUR" || o.Status != order.StatusPending ||
		o.TotalAmount != 4498 || o.Version != 1 || !o.CreatedAt.Equal(created) || !o.UpdatedAt.Equal(created) {
		t.Fatalf("created order = %+v", o)
	}
	wantItems := []struct {
		pt          order.ProductType
		qty, price  int64
		productID   string
		wantVersion uuid.Version
	}{
		{order.ProductPhysical, 2, 1999, "p-physical", 7},
		{order.ProductDigital, 1, 500, "p-digital", 7},
		{order.ProductService, 3, 0, "p-service", 7},
	}
	if len(o.LineItems) != 3 {
		t.Fatalf("line items = %+v", o.LineItems)
	}
	for i, w := range wantItems {
		li := o.LineItems[i]
		if li.ID.Version() != w.wantVersion || li.ProductType != w.pt || li.Quantity != w.qty || li.UnitPrice != w.price ||
			li.ProductID != w.productID || li.Status != order.StatusPending {
			t.Errorf("line item %d = %+v", i, li)
		}
	}
	wantJSONEqual(t, "GetOrder", b.get(t, o.ID), o)
	b.wantCounts(t, map[string]int64{"orders": 1, "order_line_items": 3, "order_status_transitions": 1,
		"order_idempotency_keys": 0, "order_outbox": 1})

	evs := b.Outbox(t, o.ID)
	if len(evs) != 1 {
		t.Fatalf("outbox = %v", eventTypes(evs))
	}
	e := evs[0]
	if e.Type != order.EventOrderCreated || e.Sequence != 1 || e.AggregateType != "order" || e.AggregateID != o.ID.String() ||
		e.ID.Version() != 7 || !reflect.DeepEqual(e.Headers, map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "vendor=x"}) {
		t.Fatalf("outbox event = %+v", e)
	}
	data := decode[order.OrderCreated](t, e.Payload)
	if data.OrderID != o.ID || data.CustomerID != "c-42" || data.TotalAmount != 4498 || data.Currency != "EUR" ||
		data.Status != order.StatusPending || data.Version != 1 || !data.CreatedAt.Equal(created) || len(data.LineItems) != 3 ||
		data.LineItems[0].Amount != 3998 || data.LineItems[0].ID != o.LineItems[0].ID || data.LineItems[2].Amount != 0 {
		t.Fatalf("order.created data = %+v", data)
	}

	ts := b.trail(t, o.ID)
	if len(ts) != 1 {
		t.Fatalf("audit trail = %+v", ts)
	}
	tr := ts[0]
	if tr.ID <= 0 || tr.OrderID != o.ID || tr.LineItemID != nil || tr.From != "" || tr.To != order.StatusPending ||
		tr.Reason != ordersvc.ReasonCreated || tr.Actor != actor || tr.Automatic || tr.EventID != e.ID || !tr.CreatedAt.Equal(created) {
		t.Fatalf("creation audit row = %+v (event %s)", tr, e.ID)
	}
}

// testTraceContextIsAdvisory checks that a trace context the outbox would
// refuse as an event header never fails the request: an invalid tracestate
// is dropped and the traceparent kept, an invalid traceparent drops both.
func testTraceContextIsAdvisory(t *testing.T, b *bundle) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		parent, state string
		want          map[string]string
	}{
		{tp, "congo=\xff\xfe", map[string]string{"traceparent": tp}},
		{tp, "congo=a\x00b", map[string]string{"traceparent": tp}},
		{tp, "k=" + string(make([]byte, 600)), map[string]string{"traceparent": tp}},
		{"00-\xff", "congo=1", nil},
		{tp + "\x00", "congo=\xff", nil},
	} {
		ctx := ordersvc.ContextWithTraceContext(context.Background(), tc.parent, tc.state)
		o, err := b.svc.CreateOrder(ctx, standardRequest("c-trace"), opts)
		if err != nil {
			t.Fatalf("(%q, %q): CreateOrder: %v", tc.parent, tc.state, err)
		}
		evs := b.Outbox(t, o.ID)
		if len(evs) != 1 || !reflect.DeepEqual(evs[0].Headers, tc.want) && (len(tc.want) != 0 || len(evs[0].Headers) != 0) {
			t.Errorf("(%q, %q): events %+v, want headers %v", tc.parent, tc.state, evs, tc.want)
		}
	}
}

func testCreateOrderInvalid(t *testing.T, b *bundle) {
	ctx := context.Background()
	empty := map[string]int64{"orders": 0, "order_line_items": 0, "order_status_transitions": 0,
		"order_idempotency_keys": 0, "order_outbox": 0}

	req := standardRequest("c-1")
	req.Currency = "eur"
	req.LineItems[1].Quantity = 0
	_, err := b.svc.CreateOrder(ctx, req, opts)
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "currency", "line_items[1].quantity")

	_, err = b.svc.CreateOrder(ctx, order.CreateOrder{CustomerID: "c-1", Currency: "EUR"}, opts)
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "line_items")

	_, err = b.svc.CreateOrder(ctx, standardRequest("c-1"), order.RequestOptions{Actor: " bob", IdempotencyKey: "k\n"})
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "actor", "idempotency_key")

	_, err = b.svc.CreateOrder(ctx, standardRequest("c-1"), order.RequestOptions{})
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "actor")
	b.wantCounts(t, empty)
}

func testNotFound(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.create(t, standardRequest("c-1"))
	before := b.counts(t)
	unknown := uuid.MustParse("0190a000-0000-7000-8000-000000000001")

	_, err := b.svc.GetOrder(ctx, unknown)
	wantCode(t, err, order.ENOTFOUND)
	if msg := order.ErrorMessage(err); msg != "Order 0190a000-0000-7000-8000-000000000001 not found." {
		t.Errorf("message = %q", msg)
	}
	_, err = b.svc.ListTransitions(ctx, unknown)
	wantCode(t, err, order.ENOTFOUND)
	_, err = b.svc.ConfirmPayment(ctx, unknown, order.ConfirmPayment{PaymentID: "p", Amount: 1, Currency: "EUR"}, opts)
	wantCode(t, err, order.ENOTFOUND)
	_, err = b.svc.ConfirmPayment(ctx, unknown, order.ConfirmPayment{PaymentID: "p", Amount: 1, Currency: "EUR"},
		order.RequestOptions{Actor: actor, IdempotencyKey: "nf-key"})
	wantCode(t, err, order.ENOTFOUND)
	_, err = b.svc.TransitionOrder(ctx, unknown, order.TransitionRequest{To: order.StatusCancelled}, opts)
	wantCode(t, err, order.ENOTFOUND)
	_, err = b.svc.TransitionLineItem(ctx, unknown, o.LineItems[0].ID, order.TransitionRequest{To: order.StatusCancelled}, opts)
	wantCode(t, err, order.ENOTFOUND)
	_, err = b.svc.TransitionLineItem(ctx, o.ID, unknown, order.TransitionRequest{To: order.StatusCancelled}, opts)
	wantCode(t, err, order.ENOTFOUND)
	b.wantCounts(t, before)
	if got := b.get(t, o.ID).Version; got != 1 {
		t.Fatalf("version = %d, want 1", got)
	}
}

func testListOrders(t *testing.T, b *bundle) {
	ctx := context.Background()
	// Eight orders, one a second apart except o[4] and o[5], created in the
	// same microsecond (the id breaks the tie). Customers alternate; o[1]
	// and o[6] are paid.
	var all []order.Order
	for i := range 8 {
		if i != 5 {
			b.clock.Advance(time.Second)
		}
		o := b.create(t, standardRequest(fmt.Sprintf("c-%d", i%2)))
		if i == 1 || i == 6 {
			o = b.pay(t, o)
		}
		all = append(all, o)
	}
	// newest first: created_at desc, then id desc
	newest := slices.Clone(all)
	slices.Reverse(newest)
	if newest[2].ID.String() < newest[3].ID.String() { // o[5] and o[4]: same time
		newest[2], newest[3] = newest[3], newest[2]
	}
	ids := func(os []order.Order) []uuid.UUID {
		out := make([]uuid.UUID, len(os))
		for i, o := range os {
			out[i] = o.ID
		}
		return out
	}

	// Pages of three: 3 + 3 + 2, with an order created between the pages,
	// which must not shift them.
	var got []order.Order
	cursor := ""
	var pages []int
	for {
		p, err := b.svc.ListOrders(ctx, order.ListFilter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(p.Orders))
		got = append(got, p.Orders...)
		if cursor == "" {
			b.clock.Advance(time.Second)
			b.create(t, standardRequest("c-late"))
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if !slices.Equal(pages, []int{3, 3, 2}) {
		t.Fatalf("page sizes = %v, want [3 3 2]", pages)
	}
	if !slices.Equal(ids(got), ids(newest)) {
		t.Fatalf("listed %v, want %v", ids(got), ids(newest))
	}
	wantJSONEqual(t, "listed orders (with line items)", got, newest)

	// The first page of the default size now shows the late order first.
	p, err := b.svc.ListOrders(ctx, order.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Orders) != 9 || p.Orders[0].CustomerID != "c-late" || p.NextCursor != "" {
		t.Fatalf("default page: %d orders, first %q, cursor %q", len(p.Orders), p.Orders[0].CustomerID, p.NextCursor)
	}

	// Filters.
	list := func(f order.ListFilter) []uuid.UUID {
		t.Helper()
		p, err := b.svc.ListOrders(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return ids(p.Orders)
	}
	byCustomer := func(c string) []uuid.UUID {
		var out []uuid.UUID
		for _, o := range newest {
			if o.CustomerID == c {
				out = append(out, o.ID)
			}
		}
		return out
	}
	if got, want := list(order.ListFilter{CustomerID: "c-1"}), byCustomer("c-1"); !slices.Equal(got, want) || len(want) != 4 {
		t.Errorf("customer c-1: %v, want %v", got, want)
	}
	if got, want := list(order.ListFilter{Status: order.StatusPaymentConfirmed}), []uuid.UUID{all[6].ID, all[1].ID}; !slices.Equal(got, want) {
		t.Errorf("payment_confirmed: %v, want %v", got, want)
	}
	if got, want := list(order.ListFilter{Status: order.StatusPaymentConfirmed, CustomerID: "c-0"}), []uuid.UUID{all[6].ID}; !slices.Equal(got, want) {
		t.Errorf("payment_confirmed of c-0: %v, want %v", got, want)
	}
	if got := list(order.ListFilter{Status: order.StatusCompleted}); len(got) != 0 {
		t.Errorf("completed: %v, want none", got)
	}
	// Filtered pagination: c-0's four orders in pages of 3 and 1.
	p1, err := b.svc.ListOrders(ctx, order.ListFilter{CustomerID: "c-0", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b.svc.ListOrders(ctx, order.ListFilter{CustomerID: "c-0", Limit: 3, Cursor: p1.NextCursor})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := append(ids(p1.Orders), ids(p2.Orders)...), byCustomer("c-0"); !slices.Equal(got, want) || len(p2.Orders) != 1 || p2.NextCursor != "" {
		t.Errorf("c-0 pages: %v + %v (next %q), want %v", ids(p1.Orders), ids(p2.Orders), p2.NextCursor, want)
	}
	// An exact fit leaves no next cursor.
	if p, err := b.svc.ListOrders(ctx, order.ListFilter{CustomerID: "c-1", Limit: 4}); err != nil || len(p.Orders) != 4 || p.NextCursor != "" {
		t.Errorf("c-1 limit 4: %d orders, cursor %q, %v", len(p.Orders), p.NextCursor, err)
	}
	// No match is an empty list, not nil.
	if p, err := b.svc.ListOrders(ctx, order.ListFilter{CustomerID: "nobody"}); err != nil || p.Orders == nil || len(p.Orders) != 0 {
		t.Errorf("no match: %#v, %v", p, err)
	}

	// A cursor the service did not issue but accepts is a position in the
	// list order like any other, the same on every store: from the first
	// and last instants a cursor may hold, from the time of an order with
	// ids around its own, from a time between orders.
	late := list(order.ListFilter{Limit: 1})
	listed := append(late, ids(newest)...)
	maxID := uuid.UUID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	tied := newest[2] // created in the same microsecond as newest[3], with a larger id
	for _, tc := range []struct {
		name string
		c    ordersvc.Cursor
		want []uuid.UUID
	}{
		{"first instant", ordersvc.Cursor{CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
		{"unix epoch", ordersvc.Cursor{CreatedAt: time.Unix(0, 0), ID: maxID}, nil},
		{"last instant", ordersvc.Cursor{CreatedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), ID: maxID}, listed},
		{"an order's own", ordersvc.Cursor{CreatedAt: newest[0].CreatedAt, ID: newest[0].ID}, ids(newest[1:])},
		{"a tie, larger id", ordersvc.Cursor{CreatedAt: tied.CreatedAt, ID: maxID}, ids(newest[2:])},
		{"a tie, between ids", ordersvc.Cursor{CreatedAt: tied.CreatedAt, ID: tied.ID}, ids(newest[3:])},
		{"a tie, smaller id", ordersvc.Cursor{CreatedAt: tied.CreatedAt, ID: uuid.Nil}, ids(newest[4:])},
		{"between orders", ordersvc.Cursor{CreatedAt: newest[5].CreatedAt.Add(time.Millisecond)}, ids(newest[5:])},
	} {
		got := list(order.ListFilter{Limit: ordersvc.MaxListLimit, Cursor: ordersvc.EncodeCursor(tc.c)})
		if !slices.Equal(got, tc.want) {
			t.Errorf("cursor at %s (%v, %s): %v, want %v", tc.name, tc.c.CreatedAt, tc.c.ID, got, tc.want)
		}
	}
}

func testListOrdersInvalid(t *testing.T, b *bundle) {
	ctx := context.Background()
	for _, tc := range []struct {
		f      order.ListFilter
		fields []string
	}{
		{order.ListFilter{Limit: 101}, []string{"limit"}},
		{order.ListFilter{Limit: -1}, []string{"limit"}},
		{order.ListFilter{Status: order.StatusShipped}, []string{"status"}},
		{order.ListFilter{Status: "nope", Cursor: "not-a-cursor"}, []string{"status", "cursor"}},
		{order.ListFilter{Cursor: ordersvc.EncodeCursor(ordersvc.Cursor{})[:10]}, []string{"cursor"}},
		// Cursors no order can have issued: stores would read their times
		// differently (PostgreSQL's range ends before int64 microseconds do).
		{order.ListFilter{Cursor: ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.UnixMicro(math.MinInt64)})}, []string{"cursor"}},
		{order.ListFilter{Cursor: ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.UnixMicro(math.MaxInt64)})}, []string{"cursor"}},
		{order.ListFilter{Cursor: ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.Date(0, 12, 31, 23, 59, 59, 999999000, time.UTC)})}, []string{"cursor"}},
		{order.ListFilter{Cursor: ordersvc.EncodeCursor(ordersvc.Cursor{CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})}, []string{"cursor"}},
	} {
		_, err := b.svc.ListOrders(ctx, tc.f)
		wantCode(t, err, order.EINVALID)
		wantFields(t, err, tc.fields...)
	}
}

func testConfirmPayment(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.create(t, standardRequest("c-42"))
	b.clock.Advance(time.Minute)
	paidAt := b.clock.Now()
	p, err := b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay_1", Amount: 4498, Currency: "EUR"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 2 || p.TotalAmount != 4498 || !p.UpdatedAt.Equal(paidAt) || !p.CreatedAt.Equal(o.CreatedAt) ||
		!slices.Equal(statuses(p), []order.Status{"payment_confirmed", "payment_confirmed", "payment_confirmed", "payment_confirmed"}) {
		t.Fatalf("paid order = %+v", p)
	}
	wantJSONEqual(t, "GetOrder", b.get(t, o.ID), p)

	evs := b.Outbox(t, o.ID)
	if got, want := eventTypes(evs), []string{"1:order.created", "2:order.payment_confirmed", "3:order.status_changed",
		"4:line_item.status_changed", "5:line_item.status_changed", "6:line_item.status_changed"}; !slices.Equal(got, want) {
		t.Fatalf("outbox = %v, want %v", got, want)
	}
	for _, e := range evs {
		if len(e.Headers) != 0 {
			t.Errorf("event %d headers = %v, want none (no trace context)", e.Sequence, e.Headers)
		}
	}
	pc := decode[order.PaymentConfirmed](t, evs[1].Payload)
	if pc.OrderID != o.ID || pc.PaymentID != "pay_1" || pc.Amount != 4498 || pc.Currency != "EUR" || pc.Actor != actor ||
		pc.Version != 2 || !pc.ConfirmedAt.Equal(paidAt) || pc.CustomerID != "c-42" {
		t.Fatalf("order.payment_confirmed data = %+v", pc)
	}
	sc := decode[order.OrderStatusChanged](t, evs[2].Payload)
	if sc.From != order.StatusPending || sc.To != order.StatusPaymentConfirmed || sc.Reason != "payment pay_1 confirmed" ||
		sc.Automatic || sc.Version != 2 || sc.TotalAmount != 4498 {
		t.Fatalf("order.status_changed data = %+v", sc)
	}
	for i := range 3 {
		li := decode[order.LineItemStatusChanged](t, evs[3+i].Payload)
		if li.LineItemID != o.LineItems[i].ID || li.From != order.StatusPending || li.To != order.StatusPaymentConfirmed ||
			li.ProductType != o.LineItems[i].ProductType || li.Amount != o.LineItems[i].Amount() || li.Version != 2 {
			t.Fatalf("line_item.status_changed %d data = %+v", i, li)
		}
	}

	ts := b.trail(t, o.ID)
	if got, want := trailLines(p, ts), []string{"order →pending", "order pending→payment_confirmed",
		"item0 pending→payment_confirmed", "item1 pending→payment_confirmed", "item2 pending→payment_confirmed"}; !slices.Equal(got, want) {
		t.Fatalf("audit trail = %v, want %v", got, want)
	}
	// Each audit row names its event: the creation order.created, the
	// payment's order row order.status_changed, each item row its event.
	for i, want := range []int{0, 2, 3, 4, 5} {
		tr := ts[i]
		if tr.EventID != evs[want].ID {
			t.Errorf("audit row %d names event %s, want %s (%s)", i, tr.EventID, evs[want].ID, evs[want].Type)
		}
		if i > 0 && (tr.Actor != actor || tr.Reason != "payment pay_1 confirmed" || !tr.CreatedAt.Equal(paidAt) || tr.Automatic) {
			t.Errorf("audit row %d = %+v", i, tr)
		}
		if i > 1 && (tr.LineItemID == nil || *tr.LineItemID != o.LineItems[i-2].ID) {
			t.Errorf("audit row %d line item = %v", i, tr.LineItemID)
		}
		if i > 0 && ts[i].ID <= ts[i-1].ID {
			t.Errorf("audit ids not increasing: %d after %d", ts[i].ID, ts[i-1].ID)
		}
	}
	b.wantCounts(t, map[string]int64{"orders": 1, "order_line_items": 3, "order_status_transitions": 5,
		"order_idempotency_keys": 0, "order_outbox": 6})
}

func testConfirmPaymentRefused(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.create(t, standardRequest("c-42"))
	before := b.counts(t)

	_, err := b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay_1", Amount: 4497, Currency: "EUR"}, opts)
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "amount")
	_, err = b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay_1", Amount: 4498, Currency: "USD"},
		order.RequestOptions{Actor: actor, IdempotencyKey: "pay-usd"})
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "currency")
	_, err = b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{Amount: -1, Currency: "EUR"}, opts)
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "payment_id", "amount")
	b.wantCounts(t, before)
	wantJSONEqual(t, "order after refused payments", b.get(t, o.ID), o)

	// A failed request stored no key: the key can be used again.
	if _, err := b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay_1", Amount: 4498, Currency: "EUR"},
		order.RequestOptions{Actor: actor, IdempotencyKey: "pay-usd"}); err != nil {
		t.Fatal(err)
	}
	// A second payment is refused: the order is no longer pending.
	_, err = b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay_2", Amount: 4498, Currency: "EUR"}, opts)
	wantCode(t, err, order.ECONFLICT)
	if got := order.ErrorAllowed(err); !slices.Equal(got, []order.Status{order.StatusCancelled}) {
		t.Errorf("allowed = %v, want [cancelled]", got)
	}
	if got := len(b.Outbox(t, o.ID)); got != 6 {
		t.Errorf("%d events, want 6", got)
	}
}

func testLineItemTransitions(t *testing.T, b *bundle) {
	o := b.pay(t, b.create(t, order.CreateOrder{CustomerID: "c-1", Currency: "EUR", LineItems: []order.CreateLineItem{
		item(order.ProductPhysical, 1, 100), item(order.ProductDigital, 1, 200),
	}}))
	b.clock.Advance(time.Minute)
	movedAt := b.clock.Now()

	// The first item past payment_confirmed makes the order processing, in
	// the same transaction.
	o = b.moveItem(t, o, 0, order.StatusPreparing)
	if o.Version != 3 || !slices.Equal(statuses(o), []order.Status{"processing", "preparing", "payment_confirmed"}) || !o.UpdatedAt.Equal(movedAt) {
		t.Fatalf("after preparing: %+v", o)
	}
	evs := b.Outbox(t, o.ID)
	if got := eventTypes(evs[5:]); !slices.Equal(got, []string{"6:line_item.status_changed", "7:order.status_changed"}) {
		t.Fatalf("new events = %v", got)
	}
	auto := decode[order.OrderStatusChanged](t, evs[6].Payload)
	wantReason := fmt.Sprintf("line item %s moved to preparing", o.LineItems[0].ID)
	if auto.From != order.StatusPaymentConfirmed || auto.To != order.StatusProcessing || !auto.Automatic || auto.Reason != wantReason || auto.Version != 3 {
		t.Fatalf("automatic order.status_changed = %+v", auto)
	}
	ts := b.trail(t, o.ID)
	last := ts[len(ts)-1]
	if last.LineItemID != nil || !last.Automatic || last.Reason != wantReason || last.Actor != actor || last.EventID != evs[6].ID ||
		ts[len(ts)-2].EventID != evs[5].ID || ts[len(ts)-2].Automatic {
		t.Fatalf("audit rows = %+v %+v", ts[len(ts)-2], last)
	}

	// Walk both items to their end: the order completes on its own.
	for _, step := range []struct {
		i  int
		to order.Status
	}{{0, "ready_to_ship"}, {1, "access_granted"}, {0, "shipped"}, {0, "delivered"}, {1, "downloaded"}} {
		o = b.moveItem(t, o, step.i, step.to)
	}
	if o.Version != 8 || !slices.Equal(statuses(o), []order.Status{"completed", "delivered", "downloaded"}) {
		t.Fatalf("final order: %+v", o)
	}
	wantJSONEqual(t, "GetOrder", b.get(t, o.ID), o)
	ts = b.trail(t, o.ID)
	if got, want := trailLines(o, ts), []string{
		"order →pending", "order pending→payment_confirmed",
		"item0 pending→payment_confirmed", "item1 pending→payment_confirmed",
		"item0 payment_confirmed→preparing", "order payment_confirmed→processing (auto)",
		"item0 preparing→ready_to_ship", "item1 payment_confirmed→access_granted",
		"item0 ready_to_ship→shipped", "item0 shipped→delivered",
		"item1 access_granted→downloaded", "order processing→completed (auto)",
	}; !slices.Equal(got, want) {
		t.Fatalf("audit trail:\n got %q\nwant %q", got, want)
	}
	if ts[len(ts)-1].Reason != order.ReasonAllLineItemsDone {
		t.Errorf("completion reason = %q", ts[len(ts)-1].Reason)
	}
	checkTrailMatchesOutbox(t, o, ts, b.Outbox(t, o.ID))
}

func testTransitionRefused(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.pay(t, b.create(t, standardRequest("c-1")))
	o = b.moveItem(t, o, 1, order.StatusAccessGranted)
	o = b.moveItem(t, o, 1, order.StatusDownloaded)
	before := b.counts(t)

	for _, tc := range []struct {
		name    string
		do      func() (order.Order, error)
		allowed []order.Status
	}{
		{"physical payment_confirmed → shipped", func() (order.Order, error) {
			return b.svc.TransitionLineItem(ctx, o.ID, o.LineItems[0].ID, order.TransitionRequest{To: order.StatusShipped}, opts)
		}, []order.Status{order.StatusPreparing, order.StatusCancelled}},
		{"digital downloaded (terminal) → cancelled", func() (order.Order, error) {
			return b.svc.TransitionLineItem(ctx, o.ID, o.LineItems[1].ID, order.TransitionRequest{To: order.StatusCancelled}, opts)
		}, []order.Status{}},
		{"service payment_confirmed → payment_confirmed", func() (order.Order, error) {
			return b.svc.TransitionLineItem(ctx, o.ID, o.LineItems[2].ID, order.TransitionRequest{To: order.StatusPaymentConfirmed}, opts)
		}, []order.Status{order.StatusBookingConfirmed, order.StatusCancelled}},
		{"order processing → cancelled (automatic only)", func() (order.Order, error) {
			return b.svc.TransitionOrder(ctx, o.ID, order.TransitionRequest{To: order.StatusCancelled}, opts)
		}, []order.Status{}},
		{"order → completed", func() (order.Order, error) {
			return b.svc.TransitionOrder(ctx, o.ID, order.TransitionRequest{To: order.StatusCompleted}, opts)
		}, []order.Status{}},
	} {
		_, err := tc.do()
		wantCode(t, err, order.ECONFLICT)
		if got := order.ErrorAllowed(err); got == nil || !slices.Equal(got, tc.allowed) {
			t.Errorf("%s: allowed = %#v, want %v", tc.name, got, tc.allowed)
		}
	}
	// Invalid requests are EINVALID.
	_, err := b.svc.TransitionLineItem(ctx, o.ID, o.LineItems[0].ID, order.TransitionRequest{To: "teleported"}, order.RequestOptions{})
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "to", "actor")
	_, err = b.svc.TransitionOrder(ctx, o.ID, order.TransitionRequest{}, opts)
	wantCode(t, err, order.EINVALID)
	wantFields(t, err, "to")

	b.wantCounts(t, before)
	wantJSONEqual(t, "order after refused transitions", b.get(t, o.ID), o)
}

func testCancelOrder(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.pay(t, b.create(t, standardRequest("c-1")))
	c, err := b.svc.TransitionOrder(ctx, o.ID, order.TransitionRequest{To: order.StatusCancelled, Reason: "customer asked"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != 3 || c.TotalAmount != 4498 || !slices.Equal(statuses(c), []order.Status{"cancelled", "cancelled", "cancelled", "cancelled"}) {
		t.Fatalf("cancelled order = %+v", c)
	}
	evs := b.Outbox(t, o.ID)
	if got := eventTypes(evs[6:]); !slices.Equal(got, []string{"7:order.status_changed", "8:line_item.status_changed",
		"9:line_item.status_changed", "10:line_item.status_changed"}) {
		t.Fatalf("cancellation events = %v", got)
	}
	ts := b.trail(t, o.ID)
	if got := trailLines(c, ts[5:]); !slices.Equal(got, []string{"order payment_confirmed→cancelled",
		"item0 payment_confirmed→cancelled", "item1 payment_confirmed→cancelled", "item2 payment_confirmed→cancelled"}) {
		t.Fatalf("cancellation audit rows = %v", got)
	}
	for _, tr := range ts[5:] {
		if tr.Reason != "customer asked" || tr.Automatic {
			t.Errorf("audit row %+v", tr)
		}
	}
	checkTrailMatchesOutbox(t, c, ts, evs)
}

func testAutomaticCancellation(t *testing.T, b *bundle) {
	// Pending: a cancelled item drops out of the total; cancelling the last
	// one cancels the order.
	o := b.create(t, order.CreateOrder{CustomerID: "c-1", Currency: "EUR", LineItems: []order.CreateLineItem{
		item(order.ProductPhysical, 2, 1000), item(order.ProductService, 1, 300),
	}})
	o = b.moveItem(t, o, 0, order.StatusCancelled)
	if o.TotalAmount != 300 || o.Status != order.StatusPending || o.Version != 2 {
		t.Fatalf("after cancelling item 0: %+v", o)
	}
	o = b.moveItem(t, o, 1, order.StatusCancelled)
	if o.TotalAmount != 0 || o.Version != 3 || !slices.Equal(statuses(o), []order.Status{"cancelled", "cancelled", "cancelled"}) {
		t.Fatalf("after cancelling item 1: %+v", o)
	}
	ts := b.trail(t, o.ID)
	if got := trailLines(o, ts); !slices.Equal(got, []string{"order →pending", "item0 pending→cancelled",
		"item1 pending→cancelled", "order pending→cancelled (auto)"}) {
		t.Fatalf("audit trail = %v", got)
	}
	if ts[3].Reason != order.ReasonAllLineItemsVoid {
		t.Errorf("reason = %q", ts[3].Reason)
	}
	evs := b.Outbox(t, o.ID)
	if got := eventTypes(evs); !slices.Equal(got, []string{"1:order.created", "2:line_item.status_changed",
		"3:line_item.status_changed", "4:order.status_changed"}) {
		t.Fatalf("outbox = %v", got)
	}
	checkTrailMatchesOutbox(t, o, ts, evs)
}

func testIfMatch(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.create(t, standardRequest("c-1"))
	before := b.counts(t)
	stale := int64(2)
	_, err := b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay", Amount: 4498, Currency: "EUR"},
		order.RequestOptions{Actor: actor, IfMatch: &stale})
	wantCode(t, err, order.EPRECONDITION)
	_, err = b.svc.TransitionOrder(ctx, o.ID, order.TransitionRequest{To: order.StatusCancelled},
		order.RequestOptions{Actor: actor, IfMatch: &stale})
	wantCode(t, err, order.EPRECONDITION)
	_, err = b.svc.TransitionLineItem(ctx, o.ID, o.LineItems[0].ID, order.TransitionRequest{To: order.StatusCancelled},
		order.RequestOptions{Actor: actor, IfMatch: &stale})
	wantCode(t, err, order.EPRECONDITION)
	if msg := order.ErrorMessage(err); msg != fmt.Sprintf("Order %s is at version 1, not 2.", o.ID) {
		t.Errorf("message = %q", msg)
	}
	b.wantCounts(t, before)

	current := int64(1)
	p, err := b.svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay", Amount: 4498, Currency: "EUR"},
		order.RequestOptions{Actor: actor, IfMatch: &current})
	if err != nil || p.Version != 2 {
		t.Fatalf("with the current version: %+v, %v", p, err)
	}
}

func testIdempotentCreate(t *testing.T, b *bundle) {
	ctx := context.Background()
	keyed := order.RequestOptions{Actor: actor, IdempotencyKey: "create-1"}
	first, err := b.svc.CreateOrder(ctx, standardRequest("c-1"), keyed)
	if err != nil {
		t.Fatal(err)
	}
	after := map[string]int64{"orders": 1, "order_line_items": 3, "order_status_transitions": 1,
		"order_idempotency_keys": 1, "order_outbox": 1}
	b.wantCounts(t, after)

	b.clock.Advance(time.Hour)
	again, err := b.svc.CreateOrder(ctx, standardRequest("c-1"), keyed)
	if err != nil {
		t.Fatal(err)
	}
	wantJSONEqual(t, "replayed order", again, first)
	b.wantCounts(t, after)

	// The same key with another body, or from another actor, is refused.
	other := standardRequest("c-1")
	other.LineItems[0].Quantity = 3
	_, err = b.svc.CreateOrder(ctx, other, keyed)
	wantCode(t, err, order.ECONFLICT)
	_, err = b.svc.CreateOrder(ctx, standardRequest("c-1"), order.RequestOptions{Actor: "mallory", IdempotencyKey: "create-1"})
	wantCode(t, err, order.ECONFLICT)
	// ... and so is using it for a payment.
	_, err = b.svc.ConfirmPayment(ctx, first.ID, order.ConfirmPayment{PaymentID: "p", Amount: 4498, Currency: "EUR"}, keyed)
	wantCode(t, err, order.ECONFLICT)
	b.wantCounts(t, after)
	if got := b.get(t, first.ID); got.Status != order.StatusPending || got.Version != 1 {
		t.Fatalf("order = %+v", got)
	}

	// Another key creates another order.
	second, err := b.svc.CreateOrder(ctx, standardRequest("c-1"), order.RequestOptions{Actor: actor, IdempotencyKey: "create-2"})
	if err != nil || second.ID == first.ID {
		t.Fatalf("second key: %v, %v", second.ID, err)
	}
	if got := b.Count(t, "order_idempotency_keys"); got != 2 {
		t.Fatalf("%d keys, want 2", got)
	}
}

func testIdempotentPayment(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.create(t, standardRequest("c-1"))
	keyed := order.RequestOptions{Actor: actor, IdempotencyKey: "pay-key"}
	req := order.ConfirmPayment{PaymentID: "pay_1", Amount: 4498, Currency: "EUR"}
	first, err := b.svc.ConfirmPayment(ctx, o.ID, req, keyed)
	if err != nil {
		t.Fatal(err)
	}
	after := map[string]int64{"orders": 1, "order_line_items": 3, "order_status_transitions": 5,
		"order_idempotency_keys": 1, "order_outbox": 6}
	b.wantCounts(t, after)

	// The order moves on; a replay still returns the payment's result, and
	// If-Match on the replay does not matter.
	moved := b.moveItem(t, first, 0, order.StatusPreparing)
	stale := int64(2)
	b.clock.Advance(time.Hour)
	again, err := b.svc.ConfirmPayment(ctx, o.ID, req, order.RequestOptions{Actor: actor, IdempotencyKey: "pay-key", IfMatch: &stale})
	if err != nil {
		t.Fatal(err)
	}
	wantJSONEqual(t, "replayed payment", again, first)
	after["order_status_transitions"], after["order_outbox"] = 7, 8
	b.wantCounts(t, after)
	wantJSONEqual(t, "stored order", b.get(t, o.ID), moved)

	// Another amount, or another order, with the key is refused.
	other := req
	other.PaymentID = "pay_2"
	_, err = b.svc.ConfirmPayment(ctx, o.ID, other, keyed)
	wantCode(t, err, order.ECONFLICT)
	o2 := b.create(t, standardRequest("c-1"))
	_, err = b.svc.ConfirmPayment(ctx, o2.ID, req, keyed)
	wantCode(t, err, order.ECONFLICT)
	if got := b.get(t, o2.ID); got.Status != order.StatusPending || got.Version != 1 {
		t.Fatalf("second order = %+v", got)
	}
	if got := b.Count(t, "order_idempotency_keys"); got != 1 {
		t.Fatalf("%d keys, want 1", got)
	}
}

func testIdempotentConcurrent(t *testing.T, b *bundle) {
	ctx := context.Background()
	const n = 8
	var (
		wg      sync.WaitGroup
		created [n]order.Order
		paid    [n]order.Order
		errs    [n]error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			created[i], errs[i] = b.svc.CreateOrder(ctx, standardRequest("c-1"), order.RequestOptions{Actor: actor, IdempotencyKey: "same"})
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil { //nolint:gosec // i < n, the array's length
			t.Fatalf("request %d: %v", i, errs[i])
		}
		wantJSONEqual(t, fmt.Sprintf("request %d", i), created[i], created[0])
	}
	b.wantCounts(t, map[string]int64{"orders": 1, "order_line_items": 3, "order_status_transitions": 1,
		"order_idempotency_keys": 1, "order_outbox": 1})

	id := created[0].ID //nolint:gosec // created is an array of n > 0
	start = make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			paid[i], errs[i] = b.svc.ConfirmPayment(ctx, id, order.ConfirmPayment{PaymentID: "p", Amount: 4498, Currency: "EUR"},
				order.RequestOptions{Actor: actor, IdempotencyKey: "same-pay"})
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil { //nolint:gosec // i < n, the array's length
			t.Fatalf("payment %d: %v", i, errs[i])
		}
		if paid[i].Version != 2 || paid[i].Status != order.StatusPaymentConfirmed {
			t.Fatalf("payment %d: %+v", i, paid[i])
		}
	}
	b.wantCounts(t, map[string]int64{"orders": 1, "order_line_items": 3, "order_status_transitions": 5,
		"order_idempotency_keys": 2, "order_outbox": 6})
	if got := eventTypes(b.Outbox(t, id)); len(got) != 6 || got[5] != "6:line_item.status_changed" {
		t.Fatalf("outbox = %v", got)
	}
}

// testConcurrentRequests fires transition requests at one order from 20
// goroutines and then checks that the order, its audit trail and its events
// tell one story, in commit order.
func testConcurrentRequests(t *testing.T, b *bundle) {
	ctx := context.Background()
	o := b.pay(t, b.create(t, order.CreateOrder{CustomerID: "c-1", Currency: "EUR", LineItems: []order.CreateLineItem{
		item(order.ProductPhysical, 1, 100), item(order.ProductPhysical, 2, 100), item(order.ProductDigital, 1, 100),
		item(order.ProductDigital, 1, 100), item(order.ProductService, 1, 100), item(order.ProductService, 1, 100),
	}}))

	const workers, attempts = 20, 4
	var (
		succeeded, conflicts, preconditions atomic.Int64
		wg                                  sync.WaitGroup
	)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42)) //nolint:gosec // test randomness
			<-start
			for range attempts {
				cur, err := b.svc.GetOrder(ctx, o.ID)
				if err != nil {
					t.Errorf("GetOrder: %v", err)
					return
				}
				ro := order.RequestOptions{Actor: fmt.Sprintf("worker-%d", w)}
				if rng.IntN(4) == 0 {
					ro.IfMatch = &cur.Version
				}
				if rng.IntN(30) == 0 {
					_, err = b.svc.TransitionOrder(ctx, o.ID, order.TransitionRequest{To: order.StatusCancelled, Reason: "race"}, ro)
				} else {
					li := cur.LineItems[rng.IntN(len(cur.LineItems))]
					targets := order.LineItemTargets(li.ProductType, li.Status)
					if len(targets) == 0 {
						continue
					}
					to := targets[rng.IntN(len(targets))]
					if to == order.StatusCancelled && rng.IntN(3) != 0 {
						to = targets[0] // fewer cancellations, longer stories
					}
					_, err = b.svc.TransitionLineItem(ctx, o.ID, li.ID, order.TransitionRequest{To: to}, ro)
				}
				switch code := order.ErrorCode(err); code {
				case "":
					succeeded.Add(1)
				case order.ECONFLICT:
					conflicts.Add(1)
				case order.EPRECONDITION:
					preconditions.Add(1)
				default:
					t.Errorf("request failed: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d succeeded, %d conflicts, %d preconditions failed", succeeded.Load(), conflicts.Load(), preconditions.Load())
	if succeeded.Load() < 5 {
		t.Fatalf("only %d requests succeeded", succeeded.Load())
	}

	final := b.get(t, o.ID)
	// create (1) + payment + the successful transitions
	if want := 2 + succeeded.Load(); final.Version != want {
		t.Fatalf("version = %d, want %d (1 + payment + %d transitions)", final.Version, want, succeeded.Load())
	}
	ts := b.trail(t, o.ID)
	evs := b.Outbox(t, o.ID)
	checkTrailMatchesOutbox(t, final, ts, evs)
	// The order row numbered the events: the outbox's counter row was never
	// written.
	if n := b.Count(t, "order_outbox_sequences"); n != 0 {
		t.Errorf("order_outbox_sequences has %d rows; the order numbers its events itself", n)
	}

	// Every request's events carry its version: in sequence order they run
	// 1, 2, … final.Version without a gap, so commits and sequences agree.
	var versions []int64
	for _, e := range evs {
		v := decode[struct {
			Version int64 `json:"version"`
		}](t, e.Payload).Version
		if n := len(versions); n == 0 || versions[n-1] != v {
			versions = append(versions, v)
		}
	}
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("event versions in sequence order = %v, want 1..%d", versions, final.Version)
		}
	}
	if int64(len(versions)) != final.Version {
		t.Fatalf("event versions = %v, want 1..%d", versions, final.Version)
	}
}

// checkTrailMatchesOutbox checks an order against its audit trail and its
// events: replaying the trail from the start passes only transitions the
// machines have and ends in the order's statuses; the events' sequences
// are 1..n without a gap; every audit row names a distinct event of the
// order with the same from/to, in sequence order; every event but
// order.payment_confirmed is named by exactly one row.
func checkTrailMatchesOutbox(t testing.TB, o order.Order, ts []order.Transition, evs []OutboxEvent) {
	t.Helper()
	// Replay.
	itemStatus := make(map[uuid.UUID]order.Status)
	itemType := make(map[uuid.UUID]order.ProductType)
	for _, li := range o.LineItems {
		itemStatus[li.ID] = order.StatusPending
		itemType[li.ID] = li.ProductType
	}
	var orderStatus order.Status
	for i, tr := range ts {
		if tr.OrderID != o.ID {
			t.Fatalf("audit row %d belongs to order %s", i, tr.OrderID)
		}
		if i > 0 && tr.ID <= ts[i-1].ID {
			t.Fatalf("audit row ids not increasing: %d after %d", tr.ID, ts[i-1].ID)
		}
		if tr.LineItemID == nil {
			if tr.From != orderStatus {
				t.Fatalf("audit row %d: order from %q, but the trail has it in %q", i, tr.From, orderStatus)
			}
			if i > 0 && order.OrderMachine().Trigger(tr.From, tr.To) == 0 {
				t.Fatalf("audit row %d: the order machine has no %s → %s", i, tr.From, tr.To)
			}
			orderStatus = tr.To
			continue
		}
		id := *tr.LineItemID
		cur, ok := itemStatus[id]
		if !ok {
			t.Fatalf("audit row %d names unknown line item %s", i, id)
		}
		if tr.From != cur {
			t.Fatalf("audit row %d: item from %q, but the trail has it in %q", i, tr.From, cur)
		}
		if order.LineItemMachine(itemType[id]).Trigger(tr.From, tr.To) == 0 {
			t.Fatalf("audit row %d: the %s machine has no %s → %s", i, itemType[id], tr.From, tr.To)
		}
		itemStatus[id] = tr.To
	}
	if orderStatus != o.Status {
		t.Fatalf("replayed order status %s, stored %s", orderStatus, o.Status)
	}
	for _, li := range o.LineItems {
		if itemStatus[li.ID] != li.Status {
			t.Fatalf("line item %s: replayed %s, stored %s", li.ID, itemStatus[li.ID], li.Status)
		}
	}

	// Events: sequences 1..n.
	byID := make(map[uuid.UUID]int, len(evs))
	for i, e := range evs {
		if e.Sequence != int64(i+1) {
			t.Fatalf("event sequences = %v, want 1..%d", eventTypes(evs), len(evs))
		}
		if e.AggregateType != order.AggregateType || e.AggregateID != o.ID.String() {
			t.Fatalf("event %d aggregate = %s/%s", i, e.AggregateType, e.AggregateID)
		}
		byID[e.ID] = i
	}
	// Audit rows ↔ events.
	named := make([]bool, len(evs))
	lastSeq := int64(0)
	for i, tr := range ts {
		j, ok := byID[tr.EventID]
		if !ok {
			t.Fatalf("audit row %d names event %s, which is not in the outbox", i, tr.EventID)
		}
		if named[j] {
			t.Fatalf("event %s is named by two audit rows", tr.EventID)
		}
		named[j] = true
		e := evs[j]
		if e.Sequence <= lastSeq {
			t.Fatalf("audit row %d's event has sequence %d after %d: trail and outbox disagree on order", i, e.Sequence, lastSeq)
		}
		lastSeq = e.Sequence
		if i == 0 {
			if e.Type != order.EventOrderCreated {
				t.Fatalf("creation row names a %s event", e.Type)
			}
			continue
		}
		d := decode[struct {
			From, To   order.Status
			LineItemID *uuid.UUID `json:"line_item_id"`
			Automatic  bool
		}](t, e.Payload)
		wantType := order.EventOrderStatusChanged
		if tr.LineItemID != nil {
			wantType = order.EventLineItemStatusChanged
			if d.LineItemID == nil || *d.LineItemID != *tr.LineItemID {
				t.Fatalf("audit row %d: event line item %v, row %v", i, d.LineItemID, *tr.LineItemID)
			}
		}
		if e.Type != wantType || d.From != tr.From || d.To != tr.To || d.Automatic != tr.Automatic {
			t.Fatalf("audit row %d (%s→%s) names %s event %+v", i, tr.From, tr.To, e.Type, d)
		}
	}
	for j, e := range evs {
		if named[j] == (e.Type == order.EventPaymentConfirmed) {
			t.Fatalf("event %d (%s): named by an audit row = %v", j, e.Type, named[j])
		}
	}
}

// testSchemaStatuses checks the schema's status CHECK constraints against
// the machines: every status of every machine is stored, a status of
// another machine is refused.
func testSchemaStatuses(t *testing.T, b *bundle) {
	ctx := context.Background()
	errRollback := errors.New("roll back")
	insert := func(o order.Order) error {
		err := b.Store.WithTx(ctx, func(tx ordersvc.Tx) error {
			if err := tx.InsertOrder(ctx, &o, 0, nil); err != nil {
				return err
			}
			return errRollback
		})
		if errors.Is(err, errRollback) {
			return nil
		}
		return err
	}
	base := func(st order.Status) order.Order {
		id := uuid.Must(uuid.NewV7())
		now := b.clock.Now()
		return order.Order{ID: id, CustomerID: "c", Currency: "EUR", Status: st, Version: 1, CreatedAt: now, UpdatedAt: now}
	}
	for _, st := range order.OrderMachine().States() {
		if err := insert(base(st)); err != nil {
			t.Errorf("order status %s refused: %v", st, err)
		}
	}
	if err := insert(base(order.StatusShipped)); err == nil {
		t.Errorf("order status shipped stored")
	}
	for _, pt := range order.ProductTypes() {
		m := order.LineItemMachine(pt)
		for _, st := range m.States() {
			o := base(order.StatusPending)
			o.LineItems = []order.LineItem{{ID: uuid.Must(uuid.NewV7()), ProductID: "p", ProductType: pt, Quantity: 1, Status: st}}
			if err := insert(o); err != nil {
				t.Errorf("%s status %s refused: %v", pt, st, err)
			}
		}
		for _, st := range []order.Status{order.StatusProcessing, "nope"} {
			o := base(order.StatusPending)
			o.LineItems = []order.LineItem{{ID: uuid.Must(uuid.NewV7()), ProductID: "p", ProductType: pt, Quantity: 1, Status: st}}
			if err := insert(o); err == nil {
				t.Errorf("%s status %s stored", pt, st)
			}
		}
	}
	// Ranges.
	for _, li := range []order.LineItem{
		{ProductType: order.ProductPhysical, Quantity: 0},
		{ProductType: order.ProductPhysical, Quantity: 10_001},
		{ProductType: order.ProductPhysical, Quantity: 1, UnitPrice: -1},
		{ProductType: order.ProductPhysical, Quantity: 1, UnitPrice: 1_000_000_000_001},
		{ProductType: "food", Quantity: 1},
	} {
		o := base(order.StatusPending)
		li.ID, li.ProductID, li.Status = uuid.Must(uuid.NewV7()), "p", order.StatusPending
		o.LineItems = []order.LineItem{li}
		if err := insert(o); err == nil {
			t.Errorf("line item %+v stored", li)
		}
	}
	bad := base(order.StatusPending)
	bad.Currency = "EURO"
	if err := insert(bad); err == nil {
		t.Errorf("currency EURO stored")
	}
	bad = base(order.StatusPending)
	bad.TotalAmount = -1
	if err := insert(bad); err == nil {
		t.Errorf("total -1 stored")
	}
	b.wantCounts(t, map[string]int64{"orders": 0, "order_line_items": 0, "order_status_transitions": 0,
		"order_idempotency_keys": 0, "order_outbox": 0})
}

// BenchmarkCreateOrder measures CreateOrder (order, 3 line items, audit row,
// outbox event, one transaction) from 16 goroutines.
func BenchmarkCreateOrder(b *testing.B, h Harness) {
	svc := ordersvc.New(h.Store, ordersvc.Config{})
	ctx := context.Background()
	req := standardRequest("c-bench")
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.CreateOrder(ctx, req, opts); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
}

// Upgrade is what RunUpgrade needs of a store: one whose database has the
// outbox's schema and no orders schema yet.
type Upgrade struct {
	Harness
	// Migrations are the store's orders migrations.
	Migrations interface {
		Migrate(ctx context.Context) error
		MigrateTo(ctx context.Context, version int64) error
		MigrateDownTo(ctx context.Context, version int64) error
	}
	// Enqueue writes events in a transaction of their own
	// (outbox.Client.Enqueue), as a Herald of the first schema did.
	Enqueue func(ctx context.Context, events ...outbox.Event) ([]outbox.Enqueued, error)
	// InsertFirstSchemaOrder writes under the first schema a pending order
	// with one pending physical line item.
	InsertFirstSchemaOrder func(t testing.TB, id uuid.UUID)
	// Publish deletes the order's events from the outbox, as a relay does
	// once the broker has them.
	Publish func(t testing.TB, id uuid.UUID)
}

// RunUpgrade checks that an order written before the order numbered its
// own events goes on from the outbox counter's last number: its next events
// follow without a gap and without taking a number twice; that a writer of
// the first schema, still running, can no longer number events of orders;
// and that migrating back hands the numbering back to the counter.
func RunUpgrade(t *testing.T, u Upgrade) {
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// An event numbered by the outbox's counter, as before the upgrade.
	byCounter := func() (int64, error) {
		enq, err := u.Enqueue(ctx, outbox.Event{AggregateType: order.AggregateType, AggregateID: id.String(),
			Type: order.EventOrderStatusChanged, Payload: json.RawMessage(`{}`)})
		if err != nil {
			return 0, err
		}
		return enq[0].Sequence, nil
	}

	must(u.Migrations.MigrateTo(ctx, 1))
	u.InsertFirstSchemaOrder(t, id)
	const before = 2 // events numbered by the counter, then published
	for range before {
		_, err := byCounter()
		must(err)
	}
	u.Publish(t, id) // so that no unique key stands in for the guard below
	must(u.Migrations.Migrate(ctx))
	if seq, err := byCounter(); err == nil {
		t.Fatalf("after the upgrade the outbox's counter still numbered an order's event (sequence %d)", seq)
	}
	svc := ordersvc.New(u.Store, ordersvc.Config{})
	if _, err := svc.TransitionOrder(ctx, id, order.TransitionRequest{To: order.StatusCancelled}, opts); err != nil {
		t.Fatalf("cancel the order written before the upgrade: %v", err)
	}
	evs := u.Outbox(t, id)
	if len(evs) == 0 {
		t.Fatal("the cancellation wrote no event")
	}
	for i, e := range evs {
		if want := int64(before + i + 1); e.Sequence != want {
			t.Fatalf("event %d (%s) has sequence %d, want %d: %v", i, e.Type, e.Sequence, want, eventTypes(evs))
		}
	}

	must(u.Migrations.MigrateDownTo(ctx, 1))
	seq, err := byCounter()
	if err != nil {
		t.Fatalf("after migrating back the counter refuses the order: %v", err)
	}
	if want := int64(before + len(evs) + 1); seq != want {
		t.Fatalf("after migrating back the counter numbered the order's next event %d, want %d", seq, want)
	}
}

// BenchmarkLifecycle measures the write path of an order's life: each
// iteration is one request, in turn per goroutine: create an order
// (standardRequest: three line items, one event), confirm its payment (five
// events), then move its physical line item to preparing (which also moves
// the order to processing: two events), ready_to_ship, shipped and
// delivered (one event each).
func BenchmarkLifecycle(b *testing.B, h Harness) {
	svc := ordersvc.New(h.Store, ordersvc.Config{})
	ctx := context.Background()
	path := []order.Status{order.StatusPreparing, order.StatusReadyToShip, order.StatusShipped, order.StatusDelivered}
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var (
			o    order.Order
			step int // 0: create, 1: pay, then path[step-2]
			err  error
		)
		for pb.Next() {
			switch step {
			case 0:
				o, err = svc.CreateOrder(ctx, standardRequest("c-bench"), opts)
			case 1:
				o, err = svc.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay-bench", Amount: o.TotalAmount, Currency: o.Currency}, opts)
			default:
				o, err = svc.TransitionLineItem(ctx, o.ID, o.LineItems[0].ID, order.TransitionRequest{To: path[step-2]}, opts)
			}
			if err != nil {
				b.Error(err)
				return
			}
			step = (step + 1) % (len(path) + 2)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}
