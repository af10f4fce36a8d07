package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/heraldhq/herald/outbox"
)

const dlqColumns = `id, event_id, aggregate_type, aggregate_id, event_type, payload, headers, sequence,
	coalesce(idempotency_key, ''), error_message, retry_count, created_at, first_failed_at,
	moved_to_dlq_at, reprocessed, reprocessed_at, discarded_at, coalesce(discard_reason, '')`

func scanDeadLetter(row pgx.Row) (outbox.DeadLetter, error) {
	var (
		dl      outbox.DeadLetter
		payload []byte
	)
	err := row.Scan(&dl.ID, &dl.EventID, &dl.AggregateType, &dl.AggregateID, &dl.EventType, &payload,
		&dl.Headers, &dl.Sequence, &dl.IdempotencyKey, &dl.Error, &dl.Attempts, &dl.CreatedAt,
		&dl.FirstFailedAt, &dl.MovedAt, &dl.Reprocessed, &dl.ReprocessedAt, &dl.DiscardedAt, &dl.DiscardReason)
	dl.Payload = payload
	return dl, err
}

// filterSQL renders f as a WHERE condition, appending its arguments to args.
func filterSQL(f outbox.DeadLetterFilter, args []any) (string, []any, error) {
	conds := []string{"true"}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	switch f.State {
	case "", outbox.DeadLetterAll:
	case outbox.DeadLetterOpen:
		conds = append(conds, "NOT reprocessed AND discarded_at IS NULL")
	case outbox.DeadLetterReplayed:
		conds = append(conds, "reprocessed")
	case outbox.DeadLetterDiscarded:
		conds = append(conds, "discarded_at IS NOT NULL")
	default:
		return "", nil, fmt.Errorf("pgstore: unknown dead letter state %q", f.State)
	}
	if f.AggregateType != "" {
		conds = append(conds, "aggregate_type = "+arg(f.AggregateType))
	}
	if f.AggregateID != "" {
		conds = append(conds, "aggregate_id = "+arg(f.AggregateID))
	}
	if f.EventType != "" {
		conds = append(conds, "event_type = "+arg(f.EventType))
	}
	if f.ErrorContains != "" {
		conds = append(conds, "strpos(error_message, "+arg(f.ErrorContains)+") > 0")
	}
	if f.AfterID > 0 {
		conds = append(conds, "id > "+arg(f.AfterID))
	}
	return strings.Join(conds, " AND "), args, nil
}

// ListDeadLetters lists dead letters matching f by id: at most f.Limit
// (default DefaultListLimit, at most MaxListLimit). A filter that f.Validate
// refuses is an error wrapping outbox.ErrInvalidFilter.
func (d *Driver) ListDeadLetters(ctx context.Context, f outbox.DeadLetterFilter) ([]outbox.DeadLetter, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("pgstore: list dead letters: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	where, args, err := filterSQL(f, nil)
	if err != nil {
		return nil, err
	}
	args = append(args, limit)
	q := d.sql.dlqSelect + where + " ORDER BY id LIMIT $" + strconv.Itoa(len(args))
	rows, _ := d.pool.Query(ctx, q, args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.DeadLetter, error) {
		return scanDeadLetter(row)
	})
	if err != nil {
		return nil, Unavailable(fmt.Errorf("pgstore: list dead letters: %w", err))
	}
	return out, nil
}

// GetDeadLetter returns one dead letter or outbox.ErrNotFound.
func (d *Driver) GetDeadLetter(ctx context.Context, id int64) (outbox.DeadLetter, error) {
	dl, err := scanDeadLetter(d.pool.QueryRow(ctx, d.sql.getDeadLetter, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return outbox.DeadLetter{}, fmt.Errorf("pgstore: dead letter %d: %w", id, outbox.ErrNotFound)
	}
	if err != nil {
		return outbox.DeadLetter{}, Unavailable(fmt.Errorf("pgstore: get dead letter: %w", err))
	}
	return dl, nil
}

// replaySQL resolves the open dead letters that the condition %s selects
// and puts their events back in the outbox with their id,
// sequence and created time, as fresh events (attempts 0, due now). An
// idempotency key that a newer pending event has taken meanwhile is left
// off, so that the replay never fails on it (as in sqlitestore). A
// concurrent replay or discard of the same row waits for the row lock, then
// finds the row resolved and replays nothing.
const replaySQL = `
WITH r AS (
	UPDATE {{dlq}} SET reprocessed = true, reprocessed_at = now()
	WHERE %s AND NOT reprocessed AND discarded_at IS NULL
	RETURNING id, event_id, aggregate_type, aggregate_id, event_type, payload, headers,
		idempotency_key, sequence, created_at
)
INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at)
SELECT event_id, aggregate_type, aggregate_id, event_type, payload, headers,
	CASE WHEN EXISTS (SELECT 1 FROM {{outbox}} o WHERE o.idempotency_key = r.idempotency_key)
		THEN NULL ELSE r.idempotency_key END,
	sequence, created_at
FROM r ORDER BY r.id`

// ReplayDeadLetter puts the dead letter's event back in the outbox exactly
// once. It returns outbox.ErrNotFound or outbox.ErrAlreadyResolved.
func (d *Driver) ReplayDeadLetter(ctx context.Context, id int64) error {
	err := d.WithTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, d.sql.replayOne, id)
		if err != nil {
			return resolveError(err)
		}
		if tag.RowsAffected() == 0 {
			return d.unresolvable(ctx, tx, id)
		}
		return d.notifyTx(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("pgstore: replay dead letter %d: %w", id, err)
	}
	return nil
}

// ReplayDeadLetters replays, in one transaction, the open dead letters that
// match f (a State of replayed or discarded matches none), in id order, at
// most f.Limit when it is positive. A filter that f.Validate refuses is an
// error wrapping outbox.ErrInvalidFilter.
func (d *Driver) ReplayDeadLetters(ctx context.Context, f outbox.DeadLetterFilter) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, fmt.Errorf("pgstore: replay dead letters: %w", err)
	}
	if f.State == outbox.DeadLetterReplayed || f.State == outbox.DeadLetterDiscarded {
		return 0, nil // only open dead letters can be replayed
	}
	f.State = outbox.DeadLetterOpen
	where, args, err := filterSQL(f, nil)
	if err != nil {
		return 0, err
	}
	sel := d.sql.replaySelect + where + " ORDER BY id"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		sel += " LIMIT $" + strconv.Itoa(len(args))
	}
	// ARRAY() runs the selection once, as an InitPlan. As "id IN (...)"
	// the planner may rescan it, and a rescan skips the rows this statement
	// has already updated and takes further ones past the limit.
	sel += " FOR UPDATE"
	var n int64
	err = d.WithTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, fmt.Sprintf(d.sql.replay, "id = ANY (ARRAY("+sel+"))"), args...)
		if err != nil {
			return resolveError(err)
		}
		n = tag.RowsAffected()
		if n == 0 {
			return nil
		}
		return d.notifyTx(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: replay dead letters: %w", err)
	}
	return int(n), nil
}

const discardSQL = `UPDATE {{dlq}} SET discarded_at = now(), discard_reason = $2
	WHERE id = $1 AND NOT reprocessed AND discarded_at IS NULL`

// DiscardDeadLetter resolves a dead letter without publishing it, recording
// reason. The aggregate's parked events flow again.
func (d *Driver) DiscardDeadLetter(ctx context.Context, id int64, reason string) error {
	err := d.WithTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, d.sql.discard, id, reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return d.unresolvable(ctx, tx, id)
		}
		return d.notifyTx(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("pgstore: discard dead letter %d: %w", id, err)
	}
	return nil
}

// unresolvable explains why dead letter id could not be resolved.
func (d *Driver) unresolvable(ctx context.Context, tx pgx.Tx, id int64) error {
	dl, err := scanDeadLetter(tx.QueryRow(ctx, d.sql.getDeadLetter, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return outbox.ErrNotFound
	case err != nil:
		return err
	}
	return outbox.Resolved(dl) // an outbox.ResolvedError: which, and when
}

// pruneSQL deletes one batch of the dead letters resolved (or, with $2,
// moved to the queue while still open) more than $1 microseconds ago; $3
// is the batch size. Rows locked by a concurrent replay or discard are
// skipped.
const pruneSQL = `
DELETE FROM {{dlq}} WHERE id = ANY (ARRAY(
	SELECT id FROM {{dlq}}
	WHERE coalesce(reprocessed_at, discarded_at) < now() - $1::bigint * interval '1 microsecond'
		OR ($2 AND NOT reprocessed AND discarded_at IS NULL
			AND moved_to_dlq_at < now() - $1::bigint * interval '1 microsecond')
	ORDER BY id LIMIT $3
	FOR UPDATE SKIP LOCKED))`

// PruneDeadLetters deletes the dead letters p selects, p.BatchSize rows per
// transaction, and returns how many it deleted.
func (d *Driver) PruneDeadLetters(ctx context.Context, p outbox.PruneParams) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("pgstore: prune dead letters: %w", err)
	}
	batch := p.BatchSize
	if batch == 0 {
		batch = outbox.DefaultPruneBatch
	}
	total := 0
	for {
		tag, err := d.pool.Exec(ctx, d.sql.prune, p.OlderThan.Microseconds(), p.IncludeOpen, batch)
		if err != nil {
			return total, Unavailable(fmt.Errorf("pgstore: prune dead letters: %w", err))
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}

// statsSQL counts the parked events from the open dead letters (few), by
// the aggregates' lowest open sequence, with index probes into the outbox.
const statsSQL = `
SELECT count(*), count(*) FILTER (WHERE attempts > 0), min(created_at),
	(SELECT count(*) FROM {{dlq}} WHERE NOT reprocessed AND discarded_at IS NULL),
	(SELECT coalesce(sum((SELECT count(*) FROM {{outbox}} p
			WHERE p.aggregate_type = d.aggregate_type AND p.aggregate_id = d.aggregate_id
			  AND p.sequence > d.sequence)), 0)::bigint
		FROM (SELECT aggregate_type, aggregate_id, min(sequence) AS sequence FROM {{dlq}}
			WHERE NOT reprocessed AND discarded_at IS NULL
			GROUP BY aggregate_type, aggregate_id) d)
FROM {{outbox}}`

// Stats counts the backlog, the open dead letters and the events parked
// behind them.
func (d *Driver) Stats(ctx context.Context) (outbox.Stats, error) {
	var (
		s      outbox.Stats
		oldest pgtype.Timestamptz
	)
	err := d.pool.QueryRow(ctx, d.sql.stats).Scan(&s.Pending, &s.Retrying, &oldest, &s.DeadLetters, &s.Parked)
	if err != nil {
		return outbox.Stats{}, Unavailable(fmt.Errorf("pgstore: stats: %w", err))
	}
	if oldest.Valid {
		s.OldestPending = oldest.Time
	}
	return s, nil
}
