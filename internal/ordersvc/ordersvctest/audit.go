package ordersvctest

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
)

// RunAuditedEvents checks a store's ordersvc.Auditor, which herald check
// reads: each audited event is pending while its row is in the outbox, and
// published once the row is gone without a dead letter. deleteOutboxRows
// deletes the outbox rows of an order behind the relay's back.
func RunAuditedEvents(t *testing.T, h Harness, deleteOutboxRows func(t testing.TB, orderID string)) {
	t.Helper()
	auditor, ok := h.Store.(ordersvc.Auditor)
	if !ok {
		t.Fatalf("%T does not implement ordersvc.Auditor", h.Store)
	}
	ctx := context.Background()
	svc := ordersvc.New(h.Store, ordersvc.Config{})
	before := time.Now().Add(-time.Minute)
	o, err := svc.CreateOrder(ctx, order.CreateOrder{CustomerID: "c-audit", Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 5}}},
		order.RequestOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	states := func(since time.Time) []string {
		events, err := auditor.AuditedEvents(ctx, since)
		if err != nil {
			t.Fatalf("AuditedEvents: %v", err)
		}
		var out []string
		for _, e := range events {
			if e.OrderID != o.ID || e.At.Before(since) {
				t.Fatalf("audited event %+v: not of order %s after %s", e, o.ID, since)
			}
			out = append(out, e.State)
		}
		return out
	}
	if got := states(before); len(got) != 1 || got[0] != ordersvc.EventPending {
		t.Fatalf("after the order's creation: %v, want one pending event", got)
	}
	if got := states(time.Now().Add(time.Minute)); len(got) != 0 {
		t.Fatalf("events after a time to come: %v", got)
	}
	deleteOutboxRows(t, o.ID.String())
	if got := states(before); len(got) != 1 || got[0] != ordersvc.EventPublished {
		t.Fatalf("after its outbox row was deleted: %v, want one event that left the outbox", got)
	}
}
