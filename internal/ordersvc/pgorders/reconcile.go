package pgorders

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
)

// auditedEventsSQL reads every audited event after $1 with where the outbox
// has it, in one statement and so in one snapshot.
const auditedEventsSQL = `
SELECT t.event_id, t.order_id, t.created_at,
	CASE
		WHEN EXISTS (SELECT 1 FROM order_outbox o WHERE o.id = t.event_id) THEN 'pending'
		WHEN EXISTS (SELECT 1 FROM order_outbox_dlq d WHERE d.event_id = t.event_id AND NOT d.reprocessed) THEN 'dead_lettered'
		ELSE 'published'
	END
FROM order_status_transitions t
WHERE t.created_at >= $1
ORDER BY t.id`

// AuditedEvents implements ordersvc.Auditor.
func (s *Store) AuditedEvents(ctx context.Context, since time.Time) ([]ordersvc.AuditedEvent, error) {
	rows, _ := s.pool.Query(ctx, auditedEventsSQL, since)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ordersvc.AuditedEvent, error) {
		var e ordersvc.AuditedEvent
		err := row.Scan(&e.EventID, &e.OrderID, &e.At, &e.State)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgorders: audited events: %w", err)
	}
	return out, nil
}

// Pool returns the pool the store runs on.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
