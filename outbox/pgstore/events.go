package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/heraldhq/herald/outbox"
)

var _ outbox.EventReader = (*Driver)(nil)

// pendingEventsSQL reads one aggregate's events by the outbox's
// (aggregate_type, aggregate_id, sequence) key.
const pendingEventsSQL = `
SELECT o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.headers,
	coalesce(o.idempotency_key, ''), o.sequence, o.attempts, coalesce(o.last_error, ''),
	o.created_at, o.first_failed_at, o.next_attempt_at,
	EXISTS (SELECT 1 FROM {{dlq}} d
		WHERE d.aggregate_type = o.aggregate_type AND d.aggregate_id = o.aggregate_id
		  AND d.sequence < o.sequence AND NOT d.reprocessed AND d.discarded_at IS NULL)
FROM {{outbox}} o
WHERE o.aggregate_type = $1 AND o.aggregate_id = $2
ORDER BY o.sequence
LIMIT $3`

// PendingEvents implements outbox.EventReader.
func (d *Driver) PendingEvents(ctx context.Context, aggregateType, aggregateID string, limit int) ([]outbox.PendingEvent, error) {
	query := nameReplacer(d.names).Replace(pendingEventsSQL)
	rows, _ := d.pool.Query(ctx, query, aggregateType, aggregateID, outbox.PendingLimit(limit))
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.PendingEvent, error) {
		var (
			e       outbox.PendingEvent
			payload []byte
			first   pgtype.Timestamptz
		)
		err := row.Scan(&e.ID, &e.AggregateType, &e.AggregateID, &e.Type, &payload, &e.Headers,
			&e.IdempotencyKey, &e.Sequence, &e.Attempts, &e.LastError,
			&e.CreatedAt, &first, &e.NextAttemptAt, &e.Parked)
		e.Payload = payload
		if first.Valid {
			e.FirstFailedAt = first.Time
		}
		return e, err
	})
	if err != nil {
		return nil, Unavailable(fmt.Errorf("pgstore: pending events: %w", err))
	}
	return out, nil
}
