package ordersvc_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/internal/ordersvc"
)

func TestReconcile(t *testing.T) {
	t.Parallel()
	now := time.Now()
	order := uuid.New()
	published, missing, pending, lateID, stray, payment := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	audited := []ordersvc.AuditedEvent{
		{EventID: published, OrderID: order, At: now, State: ordersvc.EventPublished},
		{EventID: missing, OrderID: order, At: now, State: ordersvc.EventPublished},
		{EventID: pending, OrderID: order, At: now, State: ordersvc.EventPending},
	}
	onBroker := map[uuid.UUID]ordersvc.BrokerEvent{
		published: {Type: "order.created", OrderID: order.String(), Time: now},
		// Committed after the first reading of the audit trail, published
		// before the broker was read: its audit row is in the second.
		lateID:  {Type: "order.status_changed", OrderID: order.String(), Time: now},
		stray:   {Type: "order.status_changed", OrderID: order.String(), Time: now},
		payment: {Type: "order.payment_confirmed", OrderID: order.String(), Time: now},
		// Older than the window: its audit row was not read.
		uuid.New(): {Type: "order.created", OrderID: "old", Time: now.Add(-2 * time.Hour)},
	}
	later := append(audited, ordersvc.AuditedEvent{EventID: lateID, OrderID: order, At: now, State: ordersvc.EventPublished})
	found := ordersvc.Reconcile(audited, onBroker, now.Add(-time.Hour), later...)
	got := map[uuid.UUID]bool{}
	for _, m := range found {
		got[m.EventID] = true
	}
	if len(found) != 2 || !got[missing] || !got[stray] {
		t.Fatalf("Reconcile found %+v, want the missing event and the stray one only", found)
	}
}
