package sqliteorders

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/internal/ordersvc"
)

// auditedEventsSQL reads every audited event after ?1 (unix microseconds)
// with where the outbox has it, in one statement and so in one snapshot.
const auditedEventsSQL = `
SELECT t.event_id, t.order_id, t.created_at,
	CASE
		WHEN EXISTS (SELECT 1 FROM order_outbox o WHERE o.id = t.event_id) THEN 'pending'
		WHEN EXISTS (SELECT 1 FROM order_outbox_dlq d WHERE d.event_id = t.event_id AND NOT d.reprocessed) THEN 'dead_lettered'
		ELSE 'published'
	END
FROM order_status_transitions t
WHERE t.created_at >= ?1
ORDER BY t.id`

// AuditedEvents implements ordersvc.Auditor.
func (s *Store) AuditedEvents(ctx context.Context, since time.Time) (_ []ordersvc.AuditedEvent, err error) {
	rows, err := s.db.QueryContext(ctx, auditedEventsSQL, since.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: audited events: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []ordersvc.AuditedEvent
	for rows.Next() {
		var (
			e                ordersvc.AuditedEvent
			eventID, orderID string
			at               int64
		)
		if err := rows.Scan(&eventID, &orderID, &at, &e.State); err != nil {
			return nil, fmt.Errorf("sqliteorders: audited events: %w", err)
		}
		if e.EventID, err = uuid.Parse(eventID); err != nil {
			return nil, fmt.Errorf("sqliteorders: audited events: event id: %w", err)
		}
		if e.OrderID, err = uuid.Parse(orderID); err != nil {
			return nil, fmt.Errorf("sqliteorders: audited events: order id: %w", err)
		}
		e.At = time.UnixMicro(at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteorders: audited events: %w", err)
	}
	return out, nil
}
