package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/outbox"
)

var _ outbox.EventReader = (*Driver)(nil)

// pendingEventsSQL reads one aggregate's events by the outbox's
// (aggregate_type, aggregate_id, sequence) key.
const pendingEventsSQL = `
SELECT o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.headers,
	o.idempotency_key, o.sequence, o.attempts, o.last_error,
	o.created_at, o.first_failed_at, o.next_attempt_at,
	EXISTS (SELECT 1 FROM {{dlq}} d
		WHERE d.aggregate_type = o.aggregate_type AND d.aggregate_id = o.aggregate_id
		  AND d.sequence < o.sequence AND d.reprocessed = 0 AND d.discarded_at IS NULL)
FROM {{outbox}} o
WHERE o.aggregate_type = ? AND o.aggregate_id = ?
ORDER BY o.sequence
LIMIT ?`

// PendingEvents implements outbox.EventReader.
func (d *Driver) PendingEvents(ctx context.Context, aggregateType, aggregateID string, limit int) ([]outbox.PendingEvent, error) {
	query := placeholders(d.names).Replace(pendingEventsSQL)
	rows, err := d.db.QueryContext(ctx, query, aggregateType, aggregateID, outbox.PendingLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: pending events: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []outbox.PendingEvent
	for rows.Next() {
		var (
			e                          outbox.PendingEvent
			id, payload, headers       string
			key, lastError             sql.NullString
			created, firstFailed, next sql.NullInt64
		)
		if err := rows.Scan(&id, &e.AggregateType, &e.AggregateID, &e.Type, &payload, &headers,
			&key, &e.Sequence, &e.Attempts, &lastError, &created, &firstFailed, &next, &e.Parked); err != nil {
			return nil, fmt.Errorf("sqlitestore: pending events: %w", err)
		}
		if e.ID, err = uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("sqlitestore: pending events: id %q: %w", id, err)
		}
		if e.Headers, err = decodeHeaders(headers); err != nil {
			return nil, fmt.Errorf("sqlitestore: pending event %s: %w", id, err)
		}
		e.Payload = []byte(payload)
		e.IdempotencyKey = key.String
		e.LastError = lastError.String
		e.CreatedAt = fromMicros(created)
		e.FirstFailedAt = fromMicros(firstFailed)
		e.NextAttemptAt = fromMicros(next)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: pending events: %w", err)
	}
	return out, nil
}
