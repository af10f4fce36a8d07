package order

import (
	"encoding/json"
	"testing"
)

func eventTypes(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

func eventChanges(events []Event) []int {
	var out []int
	for _, e := range events {
		out = append(out, e.Change)
	}
	return out
}

func payload(t *testing.T, e Event) string {
	t.Helper()
	b, err := e.Payload()
	if err != nil {
		t.Fatalf("Payload: %v", err)
	}
	return string(b)
}

func TestEventTypeNames(t *testing.T) {
	t.Parallel()
	assertEqual(t, "types", []string{EventOrderCreated, EventPaymentConfirmed, EventOrderStatusChanged, EventLineItemStatusChanged},
		[]string{"order.created", "order.payment_confirmed", "order.status_changed", "line_item.status_changed"})
	assertEqual(t, "aggregate type", AggregateType, "order")
}

func TestCreatedEvent(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 2, 1999), item(ProductDigital, 1, 500))
	e := CreatedEvent(&o)
	assertEqual(t, "type", e.Type, EventOrderCreated)
	assertEqual(t, "order id", e.OrderID, id(1))
	assertEqual(t, "change", e.Change, -1)
	assertEqual(t, "payload", payload(t, e), `{"order_id":"00000000-0000-0000-0000-000000000001","customer_id":"c-42","currency":"EUR",`+
		`"status":"pending","total_amount":4498,"version":1,"created_at":"2026-03-14T15:09:26.535897Z","line_items":[`+
		`{"id":"00000000-0000-0000-0000-000000000002","product_id":"p-physical","product_type":"physical","quantity":2,"unit_price":1999,"amount":3998,"status":"pending"},`+
		`{"id":"00000000-0000-0000-0000-000000000003","product_id":"p-digital","product_type":"digital","quantity":1,"unit_price":500,"amount":500,"status":"pending"}]}`)
}

func TestPaymentEvents(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 2, 1999), item(ProductDigital, 1, 500), item(ProductService, 1, 1))
	changes, err := o.ConfirmPayment(ConfirmPayment{"pay_1", 4499, "EUR"}, "alice", tn(1))
	if err != nil {
		t.Fatal(err)
	}
	events := Events(&o, changes)
	assertEqual(t, "types", eventTypes(events), []string{
		EventPaymentConfirmed, EventOrderStatusChanged,
		EventLineItemStatusChanged, EventLineItemStatusChanged, EventLineItemStatusChanged,
	})
	assertEqual(t, "changes", eventChanges(events), []int{-1, 0, 1, 2, 3})
	for _, e := range events {
		assertEqual(t, "order id", e.OrderID, id(1))
	}
	assertEqual(t, "payment_confirmed", payload(t, events[0]),
		`{"order_id":"00000000-0000-0000-0000-000000000001","customer_id":"c-42","payment_id":"pay_1","amount":4499,"currency":"EUR",`+
			`"actor":"alice","version":2,"confirmed_at":"2026-03-14T15:10:26.535897Z"}`)
	assertEqual(t, "status_changed", payload(t, events[1]),
		`{"order_id":"00000000-0000-0000-0000-000000000001","customer_id":"c-42","from":"pending","to":"payment_confirmed",`+
			`"reason":"payment pay_1 confirmed","actor":"alice","automatic":false,"total_amount":4499,"currency":"EUR","version":2,`+
			`"changed_at":"2026-03-14T15:10:26.535897Z"}`)
	assertEqual(t, "line_item.status_changed", payload(t, events[2]),
		`{"order_id":"00000000-0000-0000-0000-000000000001","customer_id":"c-42","line_item_id":"00000000-0000-0000-0000-000000000002",`+
			`"product_id":"p-physical","product_type":"physical","quantity":2,"unit_price":1999,"amount":3998,"currency":"EUR",`+
			`"from":"pending","to":"payment_confirmed","reason":"payment pay_1 confirmed","actor":"alice","automatic":false,"version":2,`+
			`"changed_at":"2026-03-14T15:10:26.535897Z"}`)
	assertEqual(t, "third item", events[4].Data.(LineItemStatusChanged).LineItemID, id(4))
	assertEqual(t, "third item type", events[4].Data.(LineItemStatusChanged).ProductType, ProductService)
}

func TestTransitionEvents(t *testing.T) {
	t.Parallel()
	t.Run("line item with automatic order change", func(t *testing.T) {
		t.Parallel()
		o := paidOrder(t, item(ProductDigital, 1, 500), item(ProductPhysical, 1, 100))
		changes := move(t, &o, id(2), StatusRefundRequested)
		events := Events(&o, changes)
		assertEqual(t, "types", eventTypes(events), []string{EventLineItemStatusChanged, EventOrderStatusChanged})
		assertEqual(t, "changes", eventChanges(events), []int{0, 1})
		d := events[1].Data.(OrderStatusChanged)
		assertEqual(t, "order change", d, OrderStatusChanged{
			OrderID: id(1), CustomerID: "c-42", From: StatusPaymentConfirmed, To: StatusProcessing,
			Reason: "line item 00000000-0000-0000-0000-000000000002 moved to refund_requested", Actor: "tester", Automatic: true,
			TotalAmount: 600, Currency: "EUR", Version: 3, ChangedAt: tn(2),
		})
	})
	t.Run("cancel by request", func(t *testing.T) {
		t.Parallel()
		o := newOrder(t, item(ProductDigital, 1, 500), item(ProductPhysical, 1, 100))
		changes, err := o.Transition(StatusCancelled, "customer asked", "bob", tn(3))
		if err != nil {
			t.Fatal(err)
		}
		events := Events(&o, changes)
		assertEqual(t, "types", eventTypes(events), []string{EventOrderStatusChanged, EventLineItemStatusChanged, EventLineItemStatusChanged})
		assertEqual(t, "changes", eventChanges(events), []int{0, 1, 2})
		assertEqual(t, "second item", events[2].Data.(LineItemStatusChanged), LineItemStatusChanged{
			OrderID: id(1), CustomerID: "c-42", LineItemID: id(3), ProductID: "p-physical", ProductType: ProductPhysical,
			Quantity: 1, UnitPrice: 100, Amount: 100, Currency: "EUR", From: StatusPending, To: StatusCancelled,
			Reason: "customer asked", Actor: "bob", Version: 2, ChangedAt: tn(3),
		})
	})
	t.Run("no changes", func(t *testing.T) {
		t.Parallel()
		o := newOrder(t, item(ProductDigital, 1, 500))
		assertEqual(t, "events", Events(&o, nil), []Event{})
	})
}

// The order's JSON has exactly the field names the API documents (openapi.json); fields may be added, never renamed.
func TestOrderJSONShape(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 2, 1999))
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "json", string(b), `{"id":"00000000-0000-0000-0000-000000000001","customer_id":"c-42","currency":"EUR",`+
		`"status":"pending","total_amount":3998,"version":1,"created_at":"2026-03-14T15:09:26.535897Z","updated_at":"2026-03-14T15:09:26.535897Z",`+
		`"line_items":[{"id":"00000000-0000-0000-0000-000000000002","product_id":"p-physical","product_type":"physical",`+
		`"quantity":2,"unit_price":1999,"status":"pending"}]}`)

	var req CreateOrder
	if err := json.Unmarshal([]byte(`{"customer_id": "c-42", "currency": "EUR",
	 "line_items": [{"product_id": "p-1", "product_type": "physical", "quantity": 2, "unit_price": 1999}]}`), &req); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "decoded request", req, validCreate())
	var p ConfirmPayment
	if err := json.Unmarshal([]byte(`{"payment_id": "pay_1", "amount": 3998, "currency": "EUR"}`), &p); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "decoded payment", p, ConfirmPayment{"pay_1", 3998, "EUR"})
	var tr TransitionRequest
	if err := json.Unmarshal([]byte(`{"to": "cancelled", "reason": "customer asked"}`), &tr); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "decoded transition", tr, TransitionRequest{To: StatusCancelled, Reason: "customer asked"})
}
