package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/heraldhq/herald/outbox"
)

// DefaultClaimLimit is the batch size Claim uses when ClaimParams.Limit is
// not positive.
const DefaultClaimLimit = 500

// The claim takes due heads (the pending event with the lowest sequence of
// its aggregate) oldest due first, ties in write order, by a range scan of
// the partial index NAME_due_heads that stops at the limit: the
// events queued behind the heads, and heads waiting for a retry, cost
// nothing. The head flag is checked against the sequences too (one probe of
// the unique (aggregate_type, aggregate_id, sequence) index), so that order
// never rests on the flag alone; the parking check is one probe of the
// partial index of open dead letters.
//
// These are templates (see renderQueries); the driver runs them as d.q has
// them, rendered for its outbox.
const (
	claimColumns = `o.pos, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.headers,
o.sequence, o.attempts, o.last_error, o.created_at, o.first_failed_at, o.idempotency_key`

	claimHeadSQL = `SELECT ` + claimColumns + `
FROM {{outbox}} AS o INDEXED BY {{outbox}}_due_heads
WHERE o.head = 1 AND o.next_attempt_at <= ?1
  AND NOT EXISTS (SELECT 1 FROM {{outbox}} AS p
                  WHERE p.aggregate_type = o.aggregate_type AND p.aggregate_id = o.aggregate_id
                    AND p.sequence < o.sequence)`

	claimParkedSQL = `
  AND NOT EXISTS (SELECT 1 FROM {{dlq}} AS d
                  WHERE d.aggregate_type = o.aggregate_type AND d.aggregate_id = o.aggregate_id
                    AND d.sequence < o.sequence AND d.reprocessed = 0 AND d.discarded_at IS NULL)`

	claimOrderSQL = `
ORDER BY o.next_attempt_at, o.pos
LIMIT ?2`

	// runSQL reads, after a head (?1, ?2: its aggregate, ?3: its
	// sequence), the events that follow it, with whether each is due (?4:
	// now) and parked; Claim takes them up to the first that is not due or
	// is parked.
	runSQL = `SELECT ` + claimColumns + `, o.next_attempt_at <= ?4,
  EXISTS (SELECT 1 FROM {{dlq}} AS d
          WHERE d.aggregate_type = o.aggregate_type AND d.aggregate_id = o.aggregate_id
            AND d.sequence < o.sequence AND d.reprocessed = 0 AND d.discarded_at IS NULL)
FROM {{outbox}} AS o
WHERE o.aggregate_type = ?1 AND o.aggregate_id = ?2 AND o.sequence > ?3
ORDER BY o.sequence
LIMIT ?5`

	// claimSQL parks the aggregates of open dead letters (the default);
	// claimMoveOnSQL lets them move on.
	claimSQL       = claimHeadSQL + claimParkedSQL + claimOrderSQL
	claimMoveOnSQL = claimHeadSQL + claimOrderSQL

	deletePublishedSQL = `DELETE FROM {{outbox}} WHERE pos IN (SELECT value FROM json_each(?1))`

	scheduleRetrySQL = `UPDATE {{outbox}}
SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 + ?4,
    first_failed_at = coalesce(first_failed_at, ?3)
WHERE pos = ?1`

	moveToDLQSQL = `INSERT INTO {{dlq}}
(event_id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, idempotency_key,
 error_message, retry_count, created_at, first_failed_at, moved_to_dlq_at)
SELECT id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, idempotency_key,
       ?2, attempts + 1, created_at, coalesce(first_failed_at, ?3), ?3
FROM {{outbox}} WHERE pos = ?1`

	deleteOneSQL = `DELETE FROM {{outbox}} WHERE pos = ?1`
)

// Claim begins a write transaction and takes up to p.Limit due head events,
// oldest due first. The transaction, and with it the database's write lock, is
// held until the batch is finished or released; another Claim, in this
// process or another one, waits for it. ctx bounds the wait for the lock and
// the query; once Claim returns, ctx no longer affects the batch (a relay
// stopping gracefully finishes its batch with a context of its own).
func (d *Driver) Claim(ctx context.Context, p outbox.ClaimParams) (outbox.Batch, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultClaimLimit
	}
	// Prepare the claim's statements now, holding nothing (a no-op once
	// they are).
	_ = d.prepare(ctx)
	tx, cancel, err := d.beginDetached(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: claim: %w", err)
	}
	query := d.q.claim
	if p.MoveOnPastDeadLetters {
		query = d.q.claimMoveOn
	}
	now := micros(d.now())
	records, pos, err := d.scanClaim(ctx, tx, query, now, limit)
	if err == nil && p.RunLength > 1 && len(records) > 0 && len(records) < limit {
		records, pos, err = d.claimRuns(ctx, tx, p, now, limit, records, pos)
	}
	if err != nil {
		_ = tx.Rollback()
		cancel()
		return nil, fmt.Errorf("sqlitestore: claim: %w", err)
	}
	if len(records) == 0 {
		// Nothing to do: give the write lock back at once.
		err := tx.Rollback()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: claim: %w", err)
		}
		return &batch{done: true}, nil
	}
	return &batch{d: d, tx: tx, cancel: cancel, records: records, pos: pos}, nil
}

// ClaimsSerially reports that a claim holds the database's write lock until
// its batch ends, so the relay does not claim ahead (outbox.SerialClaims).
func (d *Driver) ClaimsSerially() bool { return true }

// beginDetached begins a transaction whose lifetime does not depend on ctx:
// database/sql rolls a transaction back when its context ends, and a batch
// must outlive the claimer's context. ctx still ends the wait for the lock.
func (d *Driver) beginDetached(ctx context.Context) (*sql.Tx, context.CancelFunc, error) {
	txCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	tx, err := d.db.BeginTx(txCtx, nil)
	if !stop() {
		// ctx ended while we waited; txCtx is (being) cancelled too.
		if err == nil {
			_ = tx.Rollback()
		}
		cancel()
		return nil, nil, ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return tx, cancel, nil
}

func (d *Driver) scanClaim(ctx context.Context, tx *sql.Tx, query string, now int64, limit int) ([]outbox.Record, []int64, error) {
	rows, err := d.txQuery(ctx, tx, query, now, limit)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = rows.Close() }()
	var (
		records []outbox.Record
		pos     []int64
	)
	for rows.Next() {
		r, p, err := scanRecord(rows)
		if err != nil {
			return nil, nil, err
		}
		records = append(records, r)
		pos = append(pos, p)
	}
	return records, pos, rows.Err()
}

// claimRuns appends to a claim's heads the runs that follow them, within
// the batch's limit: each head's later events up to the first one that is
// not due or (unless moving on) is parked. The claim holds the write lock,
// so nothing changes under it.
func (d *Driver) claimRuns(ctx context.Context, tx *sql.Tx, p outbox.ClaimParams, now int64, limit int, records []outbox.Record, pos []int64) ([]outbox.Record, []int64, error) {
	heads := len(records)
	for i := 0; i < heads && len(records) < limit; i++ {
		var err error
		records, pos, err = d.claimRun(ctx, tx, p, records[i], now, min(p.RunLength-1, limit-len(records)), records, pos)
		if err != nil {
			return nil, nil, err
		}
	}
	return records, pos, nil
}

// claimRun appends up to n events that follow head h, up to the first one
// that is not due or (unless moving on) is parked.
func (d *Driver) claimRun(ctx context.Context, tx *sql.Tx, p outbox.ClaimParams, h outbox.Record, now int64, n int, records []outbox.Record, pos []int64) ([]outbox.Record, []int64, error) {
	rows, err := d.txQuery(ctx, tx, d.q.runs, h.AggregateType, h.AggregateID, h.Sequence, now, n)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var due, parked bool
		r, rp, err := scanRecord(rows, &due, &parked)
		if err != nil {
			return nil, nil, err
		}
		if !due || parked && !p.MoveOnPastDeadLetters {
			break
		}
		records = append(records, r)
		pos = append(pos, rp)
	}
	return records, pos, errors.Join(rows.Err(), rows.Close())
}

// scanRecord reads the claim columns of one row, and extra after them.
func scanRecord(rows *sql.Rows, extra ...any) (outbox.Record, int64, error) {
	var (
		r                    outbox.Record
		p                    int64
		id, headers, payload string
		lastError, key       sql.NullString
		created, firstFailed sql.NullInt64
	)
	dest := append([]any{&p, &id, &r.AggregateType, &r.AggregateID, &r.Type, &payload, &headers,
		&r.Sequence, &r.Attempts, &lastError, &created, &firstFailed, &key}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return r, 0, err
	}
	var err error
	if r.ID, err = uuid.Parse(id); err != nil {
		return r, 0, fmt.Errorf("event at pos %d: id %q: %w", p, id, err)
	}
	if r.Headers, err = decodeHeaders(headers); err != nil {
		return r, 0, fmt.Errorf("event %s: %w", id, err)
	}
	r.Payload = []byte(payload)
	r.LastError = lastError.String
	r.IdempotencyKey = key.String
	r.CreatedAt = fromMicros(created)
	r.FirstFailedAt = fromMicros(firstFailed)
	return r, p, nil
}

// batch is a claim: the records and the write transaction holding them.
type batch struct {
	d       *Driver
	tx      *sql.Tx
	cancel  context.CancelFunc
	records []outbox.Record
	pos     []int64

	mu   sync.Mutex
	done bool
}

func (b *batch) Records() []outbox.Record { return b.records }

// Finish applies the outcomes and commits, in the claim's transaction: a
// dead-lettered event is in exactly one of the two tables at every moment
// another connection can see.
func (b *batch) Finish(ctx context.Context, outcomes []outbox.Outcome) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(outcomes) != len(b.records) {
		return fmt.Errorf("sqlitestore: finish: %d outcomes for %d events", len(outcomes), len(b.records))
	}
	if b.tx == nil {
		return nil // an empty claim holds nothing
	}
	if b.done {
		return errors.New("sqlitestore: batch already finished or released")
	}
	for i, o := range outcomes {
		switch o.Kind {
		case outbox.OutcomePublished, outbox.OutcomeRetry, outbox.OutcomeDeadLetter, outbox.OutcomeReleased:
		default:
			return fmt.Errorf("sqlitestore: finish: event %s: unknown outcome kind %d", b.records[i].ID, o.Kind)
		}
	}
	if err := b.apply(ctx, outcomes); err != nil {
		// The transaction may hold part of the outcomes: end it, so that
		// nothing of them is kept and the events are claimed again.
		b.end()
		return fmt.Errorf("sqlitestore: finish: %w", err)
	}
	err := b.tx.Commit()
	b.end()
	if err != nil {
		return fmt.Errorf("sqlitestore: finish: commit: %w", err)
	}
	return nil
}

func (b *batch) apply(ctx context.Context, outcomes []outbox.Outcome) error {
	now := micros(b.d.now())
	var published strings.Builder
	published.WriteByte('[')
	n := 0
	for i, o := range outcomes {
		switch o.Kind {
		case outbox.OutcomePublished:
			if n > 0 {
				published.WriteByte(',')
			}
			published.WriteString(strconv.FormatInt(b.pos[i], 10))
			n++
		case outbox.OutcomeRetry:
			if _, err := b.d.txExec(ctx, b.tx, b.d.q.scheduleRetry, b.pos[i], o.Error, now, max(o.Delay.Microseconds(), 0)); err != nil {
				return fmt.Errorf("schedule retry of %s: %w", b.records[i].ID, err)
			}
		case outbox.OutcomeReleased:
			// A claim changes no row: the event is as it was.
		case outbox.OutcomeDeadLetter:
			if _, err := b.d.txExec(ctx, b.tx, b.d.q.moveToDLQ, b.pos[i], o.Error, now); err != nil {
				return fmt.Errorf("dead-letter %s: %w", b.records[i].ID, err)
			}
			if _, err := b.d.txExec(ctx, b.tx, b.d.q.deleteOne, b.pos[i]); err != nil {
				return fmt.Errorf("dead-letter %s: %w", b.records[i].ID, err)
			}
		}
	}
	if n > 0 {
		published.WriteByte(']')
		res, err := b.d.txExec(ctx, b.tx, b.d.q.deletePublished, published.String())
		if err != nil {
			return fmt.Errorf("delete published: %w", err)
		}
		if got, err := res.RowsAffected(); err == nil && got != int64(n) {
			return fmt.Errorf("delete published: deleted %d of %d events", got, n)
		}
	}
	return nil
}

// Release rolls the claim back; the events are claimed again later. It is a
// no-op on a batch that has ended.
func (b *batch) Release(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return nil
	}
	err := b.tx.Rollback()
	b.end()
	if err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("sqlitestore: release: %w", err)
	}
	return nil
}

// end marks the batch done and releases its transaction and context.
func (b *batch) end() {
	if b.done {
		return
	}
	_ = b.tx.Rollback() // no-op after a commit
	b.cancel()
	b.done = true
}
