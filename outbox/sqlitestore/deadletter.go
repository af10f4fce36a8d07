package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/heraldhq/herald/outbox"
)

// Limits of ListDeadLetters.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Templates of the dead-letter queries (see renderQueries).
const (
	deadLetterColumns = `id, event_id, aggregate_type, aggregate_id, event_type, payload, headers, sequence,
idempotency_key, error_message, retry_count, created_at, first_failed_at, moved_to_dlq_at,
reprocessed, reprocessed_at, discarded_at, discard_reason`

	openDeadLetter = `reprocessed = 0 AND discarded_at IS NULL`

	// replaySQL puts dead letters (ids in a JSON array) back in the outbox
	// with their original id, sequence, payload, headers and created time,
	// and a fresh attempt count. The idempotency key goes back with them
	// unless a newer pending event has taken it meanwhile; the key only
	// guards enqueueing, and the event keeps its id.
	//
	// A replayed event is the head when no pending event of its aggregate
	// has a lower sequence; replayHeadsSQL then takes the flag from heads
	// that the replayed events now precede.
	replaySQL = `INSERT INTO {{outbox}}
(id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, attempts, next_attempt_at, created_at,
 idempotency_key, head)
SELECT d.event_id, d.aggregate_type, d.aggregate_id, d.event_type, d.payload, d.headers, d.sequence, 0, ?2, d.created_at,
       CASE WHEN d.idempotency_key IS NULL
                 OR EXISTS (SELECT 1 FROM {{outbox}} AS o WHERE o.idempotency_key = d.idempotency_key)
            THEN NULL ELSE d.idempotency_key END,
       NOT EXISTS (SELECT 1 FROM {{outbox}} AS o
                   WHERE o.aggregate_type = d.aggregate_type AND o.aggregate_id = d.aggregate_id
                     AND o.sequence < d.sequence)
FROM {{dlq}} AS d
WHERE d.id IN (SELECT value FROM json_each(?1)) AND d.reprocessed = 0 AND d.discarded_at IS NULL
ORDER BY d.id`

	replayHeadsSQL = `UPDATE {{outbox}} AS o SET head = 0
WHERE o.head = 1
  AND (o.aggregate_type, o.aggregate_id) IN (SELECT aggregate_type, aggregate_id FROM {{dlq}}
                                             WHERE id IN (SELECT value FROM json_each(?1)))
  AND EXISTS (SELECT 1 FROM {{outbox}} AS p
              WHERE p.aggregate_type = o.aggregate_type AND p.aggregate_id = o.aggregate_id
                AND p.sequence < o.sequence)`

	markReplayedSQL = `UPDATE {{dlq}} SET reprocessed = 1, reprocessed_at = ?2
WHERE id IN (SELECT value FROM json_each(?1)) AND ` + openDeadLetter

	discardSQL = `UPDATE {{dlq}} SET discarded_at = ?2, discard_reason = ?3
WHERE id = ?1 AND ` + openDeadLetter

	// pruneSQL deletes one batch (?3 rows) of the dead letters resolved
	// before ?1 (microseconds), or with ?2 moved to the queue before ?1
	// while still open.
	pruneSQL = `DELETE FROM {{dlq}} WHERE id IN (SELECT id FROM {{dlq}}
WHERE coalesce(reprocessed_at, discarded_at) < ?1
   OR (?2 AND ` + openDeadLetter + ` AND moved_to_dlq_at < ?1)
ORDER BY id LIMIT ?3)`

	statsSQL = `SELECT
  (SELECT count(*) FROM {{outbox}}),
  (SELECT count(*) FROM {{outbox}} WHERE attempts > 0),
  (SELECT min(created_at) FROM {{outbox}}),
  (SELECT count(*) FROM {{dlq}} WHERE ` + openDeadLetter + `),
  (SELECT coalesce(sum((SELECT count(*) FROM {{outbox}} AS p
                        WHERE p.aggregate_type = d.aggregate_type AND p.aggregate_id = d.aggregate_id
                          AND p.sequence > d.sequence)), 0)
   FROM (SELECT aggregate_type, aggregate_id, min(sequence) AS sequence FROM {{dlq}}
         WHERE ` + openDeadLetter + ` GROUP BY aggregate_type, aggregate_id) AS d)`

	getDeadLetterSQL = `SELECT ` + deadLetterColumns + ` FROM {{dlq}} WHERE id = ?1`

	// listDeadLettersSQL and replayIDsSQL are completed with the filter's
	// condition (deadLetterWhere).
	listDeadLettersSQL = `SELECT ` + deadLetterColumns + ` FROM {{dlq}} WHERE `
	replayIDsSQL       = `SELECT json_group_array(id) FROM (SELECT id FROM {{dlq}} WHERE `
)

// ListDeadLetters lists dead letters matching f in id order: at most f.Limit
// of them (DefaultListLimit when zero, at most MaxListLimit). A filter that
// f.Validate refuses is an error wrapping outbox.ErrInvalidFilter.
func (d *Driver) ListDeadLetters(ctx context.Context, f outbox.DeadLetterFilter) ([]outbox.DeadLetter, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("sqlitestore: list dead letters: %w", err)
	}
	where, args, err := deadLetterWhere(f)
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	args = append(args, limit)
	//nolint:gosec // where is built from constant fragments; values are bound
	query := d.q.listDeadLetters + where + ` ORDER BY id LIMIT ?`
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: list dead letters: %w", err)
	}
	defer func() { _ = rows.Close() }()
	out := []outbox.DeadLetter{}
	for rows.Next() {
		dl, err := scanDeadLetter(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: list dead letters: %w", err)
		}
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: list dead letters: %w", err)
	}
	return out, nil
}

// GetDeadLetter returns one dead letter, or an error wrapping
// outbox.ErrNotFound.
func (d *Driver) GetDeadLetter(ctx context.Context, id int64) (outbox.DeadLetter, error) {
	row := d.db.QueryRowContext(ctx, d.q.getDeadLetter, id)
	dl, err := scanDeadLetter(row)
	if errors.Is(err, sql.ErrNoRows) {
		return outbox.DeadLetter{}, fmt.Errorf("%w: dead letter %d", outbox.ErrNotFound, id)
	}
	if err != nil {
		return outbox.DeadLetter{}, fmt.Errorf("sqlitestore: get dead letter %d: %w", id, err)
	}
	return dl, nil
}

// ReplayDeadLetter puts a dead letter's event back in the outbox and marks
// the dead letter reprocessed, in one transaction. It returns an error
// wrapping outbox.ErrNotFound or outbox.ErrAlreadyResolved.
func (d *Driver) ReplayDeadLetter(ctx context.Context, id int64) error {
	err := d.WithTx(ctx, func(tx *sql.Tx) error {
		n, err := d.replay(ctx, tx, fmt.Sprintf("[%d]", id), micros(d.now()))
		if err != nil {
			return err
		}
		if n == 0 {
			return d.resolveError(ctx, tx, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: replay dead letter %d: %w", id, err)
	}
	d.wakes.signal()
	return nil
}

// ReplayDeadLetters replays, in one transaction, every open dead letter
// matching f (the first f.Limit of them in id order when f.Limit > 0). A
// filter on the state replayed or discarded matches nothing. A filter that
// f.Validate refuses is an error wrapping outbox.ErrInvalidFilter.
func (d *Driver) ReplayDeadLetters(ctx context.Context, f outbox.DeadLetterFilter) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, fmt.Errorf("sqlitestore: replay dead letters: %w", err)
	}
	switch f.State {
	case "", outbox.DeadLetterAll, outbox.DeadLetterOpen:
		f.State = outbox.DeadLetterOpen
	case outbox.DeadLetterReplayed, outbox.DeadLetterDiscarded:
		return 0, nil
	}
	where, args, err := deadLetterWhere(f)
	if err != nil {
		return 0, err
	}
	query := d.q.replayIDs + where + ` ORDER BY id`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	query += `)`
	var replayed int
	err = d.WithTx(ctx, func(tx *sql.Tx) error {
		var ids string
		if err := tx.QueryRowContext(ctx, query, args...).Scan(&ids); err != nil {
			return err
		}
		n, err := d.replay(ctx, tx, ids, micros(d.now()))
		replayed = n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: replay dead letters: %w", err)
	}
	if replayed > 0 {
		d.wakes.signal()
	}
	return replayed, nil
}

// replay moves the open dead letters among ids (a JSON array) back to the
// outbox and returns how many it moved.
func (d *Driver) replay(ctx context.Context, tx *sql.Tx, ids string, now int64) (int, error) {
	res, err := tx.ExecContext(ctx, d.q.replay, ids, now)
	if err != nil {
		if isUnique(err) {
			return 0, fmt.Errorf("%w: the event is in the outbox already: %w", outbox.ErrDuplicate, err)
		}
		return 0, err
	}
	inserted, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, d.q.replayHeads, ids); err != nil {
		return 0, err
	}
	res, err = tx.ExecContext(ctx, d.q.markReplayed, ids, now)
	if err != nil {
		return 0, err
	}
	marked, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if marked != inserted {
		return 0, fmt.Errorf("replayed %d events but marked %d dead letters", inserted, marked)
	}
	return int(marked), nil
}

// DiscardDeadLetter resolves a dead letter without publishing it, keeping
// the row with reason and time as an audit record. The aggregate's parked
// events flow again. It returns an error wrapping outbox.ErrNotFound or
// outbox.ErrAlreadyResolved.
func (d *Driver) DiscardDeadLetter(ctx context.Context, id int64, reason string) error {
	err := d.WithTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, d.q.discard, id, micros(d.now()), reason)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		return d.resolveError(ctx, tx, id)
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: discard dead letter %d: %w", id, err)
	}
	d.wakes.signal()
	return nil
}

// PruneDeadLetters deletes the dead letters p selects, p.BatchSize rows per
// transaction, and returns how many it deleted.
func (d *Driver) PruneDeadLetters(ctx context.Context, p outbox.PruneParams) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, fmt.Errorf("sqlitestore: prune dead letters: %w", err)
	}
	batch := p.BatchSize
	if batch == 0 {
		batch = outbox.DefaultPruneBatch
	}
	cutoff := micros(d.now()) - p.OlderThan.Microseconds()
	total := 0
	for {
		var n int64
		err := d.WithTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, d.q.prune, cutoff, p.IncludeOpen, batch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("sqlitestore: prune dead letters: %w", err)
		}
		total += int(n)
		if n < int64(batch) {
			return total, nil
		}
	}
}

// resolveError says why dead letter id could not be resolved.
func (d *Driver) resolveError(ctx context.Context, tx *sql.Tx, id int64) error {
	dl, err := scanDeadLetter(tx.QueryRowContext(ctx, d.q.getDeadLetter, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return outbox.ErrNotFound
	case err != nil:
		return err
	}
	return outbox.Resolved(dl) // an outbox.ResolvedError: which, and when
}

// Stats counts the backlog, the open dead letters and the events parked
// behind them.
func (d *Driver) Stats(ctx context.Context) (outbox.Stats, error) {
	var (
		s      outbox.Stats
		oldest sql.NullInt64
	)
	if err := d.db.QueryRowContext(ctx, d.q.stats).Scan(&s.Pending, &s.Retrying, &oldest, &s.DeadLetters, &s.Parked); err != nil {
		return outbox.Stats{}, fmt.Errorf("sqlitestore: stats: %w", err)
	}
	s.OldestPending = fromMicros(oldest)
	return s, nil
}

// deadLetterWhere renders f (all but Limit) as a WHERE condition.
func deadLetterWhere(f outbox.DeadLetterFilter) (string, []any, error) {
	conds := []string{"id > ?"}
	args := []any{f.AfterID}
	switch f.State {
	case "", outbox.DeadLetterAll:
	case outbox.DeadLetterOpen:
		conds = append(conds, openDeadLetter)
	case outbox.DeadLetterReplayed:
		conds = append(conds, "reprocessed = 1")
	case outbox.DeadLetterDiscarded:
		conds = append(conds, "discarded_at IS NOT NULL")
	default:
		return "", nil, fmt.Errorf("sqlitestore: unknown dead letter state %q", f.State)
	}
	for _, c := range []struct{ col, v string }{
		{"aggregate_type", f.AggregateType},
		{"aggregate_id", f.AggregateID},
		{"event_type", f.EventType},
	} {
		if c.v != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if f.ErrorContains != "" {
		conds = append(conds, "instr(error_message, ?) > 0")
		args = append(args, f.ErrorContains)
	}
	return strings.Join(conds, " AND "), args, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanDeadLetter(row scanner) (outbox.DeadLetter, error) {
	var (
		dl                          outbox.DeadLetter
		eventID, payload, headers   string
		key, reason                 sql.NullString
		created, firstFailed, moved sql.NullInt64
		reprocessedAt, discardedAt  sql.NullInt64
		reprocessed                 int64
	)
	if err := row.Scan(&dl.ID, &eventID, &dl.AggregateType, &dl.AggregateID, &dl.EventType, &payload, &headers,
		&dl.Sequence, &key, &dl.Error, &dl.Attempts, &created, &firstFailed, &moved,
		&reprocessed, &reprocessedAt, &discardedAt, &reason); err != nil {
		return outbox.DeadLetter{}, err
	}
	var err error
	if dl.EventID, err = uuid.Parse(eventID); err != nil {
		return outbox.DeadLetter{}, fmt.Errorf("dead letter %d: event id %q: %w", dl.ID, eventID, err)
	}
	if dl.Headers, err = decodeHeaders(headers); err != nil {
		return outbox.DeadLetter{}, fmt.Errorf("dead letter %d: %w", dl.ID, err)
	}
	dl.Payload = []byte(payload)
	dl.IdempotencyKey = key.String
	dl.CreatedAt = fromMicros(created)
	dl.FirstFailedAt = fromMicros(firstFailed)
	dl.MovedAt = fromMicros(moved)
	dl.Reprocessed = reprocessed == 1
	dl.ReprocessedAt = fromMicrosPtr(reprocessedAt)
	dl.DiscardedAt = fromMicrosPtr(discardedAt)
	dl.DiscardReason = reason.String
	return dl, nil
}
