package ordersvc

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Where an audited event is, as the database sees it.
const (
	EventPending      = "pending"       // in the outbox (due, in retry or parked)
	EventDeadLettered = "dead_lettered" // in the dead-letter queue, open or discarded
	EventPublished    = "published"     // neither: the relay published it, so the broker must have it
)

// AuditedEvent is the event of one audit row and where the database has it.
type AuditedEvent struct {
	EventID uuid.UUID
	OrderID uuid.UUID
	At      time.Time // the transition's time
	State   string    // EventPending, EventDeadLettered or EventPublished
}

// Auditor lists the events of the audit trail, for herald check.
type Auditor interface {
	// AuditedEvents returns the event of every transition written at or
	// after since, oldest first, each with where the outbox has it, all
	// read in one snapshot.
	AuditedEvents(ctx context.Context, since time.Time) ([]AuditedEvent, error)
}

// BrokerEvent is an event as the broker holds it.
type BrokerEvent struct {
	Type    string
	OrderID string
	Time    time.Time // the event's time: when its transaction wrote it
}

// Mismatch is one finding of Reconcile.
type Mismatch struct {
	EventID uuid.UUID
	OrderID string
	Problem string
}

// Reconcile compares the audit trail with the broker. An event that left
// the outbox without being dead-lettered must be on the broker; an event on
// the broker must have an audit row, except order.payment_confirmed, which
// a payment confirmation emits beside the audited status change. Read the
// database before the broker: an event published in between is then on
// the broker when it is read.
//
// later is the audit trail read again after the broker: an event committed
// after the first reading and published before the broker was read has its
// audit row there.
func Reconcile(audited []AuditedEvent, onBroker map[uuid.UUID]BrokerEvent, since time.Time, later ...AuditedEvent) []Mismatch {
	var out []Mismatch
	audit := make(map[uuid.UUID]bool, len(audited)+len(later))
	for _, e := range later {
		audit[e.EventID] = true
	}
	for _, e := range audited {
		audit[e.EventID] = true
		if _, ok := onBroker[e.EventID]; e.State == EventPublished && !ok {
			out = append(out, Mismatch{EventID: e.EventID, OrderID: e.OrderID.String(),
				Problem: "audited at " + e.At.UTC().Format(time.RFC3339) + ", neither pending, dead-lettered nor on the broker"})
		}
	}
	for id, e := range onBroker {
		if e.Time.Before(since) {
			continue // its audit row, if any, is older than what was read
		}
		if !audit[id] && e.Type != "order.payment_confirmed" {
			out = append(out, Mismatch{EventID: id, OrderID: e.OrderID,
				Problem: e.Type + " on the broker has no audit row" + sinceNote(since)})
		}
	}
	return out
}

func sinceNote(since time.Time) string {
	if since.IsZero() {
		return ""
	}
	return " since " + since.UTC().Format(time.RFC3339)
}
