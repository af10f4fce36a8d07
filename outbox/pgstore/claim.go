package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/heraldhq/herald/outbox"
)

// claimSQL takes the due heads: the lowest-sequence event of each aggregate
// (so at most one per aggregate), if it is due and, unless moving on, no open
// dead letter of an earlier event of its aggregate parks it. A head another
// claim holds is skipped, and its successors are never looked at: the held
// row is still the lowest one this statement sees.
//
// It walks the aggregates in key order from a cursor (a loose index scan on
// the (aggregate_type, aggregate_id, sequence) key: the first entry past an
// aggregate is the next aggregate's head), so a claim costs O(limit) probes however
// the backlog is shaped — a few aggregates with long backlogs included — and
// successive claims take aggregates round robin. %[1]s is the parking
// condition, %[2]s bounds the second walk, which wraps around to the start.
const claimSQL = `
DELETE FROM {{outbox}}
WHERE id = ANY (ARRAY(
	WITH RECURSIVE walk(aggregate_type, aggregate_id, id) AS (
		(SELECT x.aggregate_type, x.aggregate_id, x.id FROM {{outbox}} x
		 WHERE (x.aggregate_type, x.aggregate_id) > ($2::text, $3::text) %[2]s
		 ORDER BY x.aggregate_type, x.aggregate_id, x.sequence LIMIT 1)
		UNION ALL
		SELECT n.aggregate_type, n.aggregate_id, n.id FROM walk w
		CROSS JOIN LATERAL (
			SELECT x.aggregate_type, x.aggregate_id, x.id FROM {{outbox}} x
			WHERE (x.aggregate_type, x.aggregate_id) > (w.aggregate_type, w.aggregate_id) %[2]s
			ORDER BY x.aggregate_type, x.aggregate_id, x.sequence LIMIT 1) n
	)
	SELECT o.id FROM walk w
	JOIN {{outbox}} o ON o.id = w.id
	WHERE o.next_attempt_at <= now()
	  %[1]s
	LIMIT $1
	FOR UPDATE OF o SKIP LOCKED))
RETURNING id, aggregate_type, aggregate_id, event_type, payload, headers,
	coalesce(idempotency_key, ''), sequence, attempts, coalesce(last_error, ''),
	created_at, first_failed_at, pos`

// wrapBoundSQL stops the second walk of a claim at the aggregate where the
// first one started.
const wrapBoundSQL = `AND (x.aggregate_type, x.aggregate_id) <= ($4::text, $5::text)`

// parkedSQL parks events behind an open dead letter of an earlier sequence
// of their aggregate. A replayed dead letter is itself never parked by the
// later ones that moved on past it (MoveOnPastDeadLetters) and failed too.
const parkedSQL = `AND NOT EXISTS (
		SELECT 1 FROM {{dlq}} d
		WHERE d.aggregate_type = o.aggregate_type
		  AND d.aggregate_id = o.aggregate_id
		  AND d.sequence < o.sequence
		  AND NOT d.reprocessed AND d.discarded_at IS NULL)`

// aggregateKey orders aggregates as the claim walks them.
type aggregateKey struct{ typ, id string }

// Claim deletes up to p.Limit due head events in a transaction that stays
// open in the returned Batch until Finish or Release.
func (d *Driver) Claim(ctx context.Context, p outbox.ClaimParams) (outbox.Batch, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultClaimLimit
	}
	queries := d.sql.claims[1]
	if p.MoveOnPastDeadLetters {
		queries = d.sql.claims[0]
	}
	tx, err := d.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: d.sql.claimBegin})
	if err != nil {
		return nil, fmt.Errorf("pgstore: claim: begin: %w", err)
	}
	d.cursorMu.Lock()
	from := d.cursor
	d.cursorMu.Unlock()
	// From the cursor to the last aggregate, then from the first one back to
	// the cursor; rows the first pass deleted are gone for the second.
	var (
		records []outbox.Record
		pos     []int64
	)
	records, pos, err = claimPass(ctx, tx, queries[0], limit, records, pos, from.typ, from.id)
	if err == nil && len(records) < limit && from != (aggregateKey{}) {
		records, pos, err = claimPass(ctx, tx, queries[1], limit-len(records), records, pos, "", "", from.typ, from.id)
	}
	if err != nil {
		return nil, rollbackAfter(ctx, tx, err)
	}
	if len(records) == 0 {
		if err := rollbackAfter(ctx, tx, nil); err != nil {
			return nil, fmt.Errorf("pgstore: claim: %w", err)
		}
		return &batch{d: d}, nil
	}
	d.cursorMu.Lock()
	d.cursor = walkEnd(from, records)
	d.cursorMu.Unlock()
	// RETURNING has no order; hand the records out oldest first.
	idx := make([]int, len(records))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(pos[a], pos[b]) })
	b := &batch{d: d, tx: tx, records: make([]outbox.Record, len(idx)), pos: make([]int64, len(idx))}
	for j, i := range idx {
		b.records[j], b.pos[j] = records[i], pos[i]
	}
	return b, nil
}

// walkEnd returns where the next walk starts: after the last aggregate this
// claim took, in walk order (those past the cursor come before the wrapped
// ones).
func walkEnd(from aggregateKey, records []outbox.Record) aggregateKey {
	less := func(a, b aggregateKey) bool { return a.typ < b.typ || (a.typ == b.typ && a.id < b.id) }
	var beyond, wrapped aggregateKey
	for i := range records {
		k := aggregateKey{records[i].AggregateType, records[i].AggregateID}
		if less(from, k) {
			if less(beyond, k) {
				beyond = k
			}
		} else if less(wrapped, k) {
			wrapped = k
		}
	}
	if wrapped != (aggregateKey{}) {
		return wrapped
	}
	return beyond
}

// claimPass runs one walk of the claim and appends what it deleted.
func claimPass(ctx context.Context, tx pgx.Tx, query string, limit int, records []outbox.Record, pos []int64, args ...any) ([]outbox.Record, []int64, error) {
	rows, _ := tx.Query(ctx, query, append([]any{limit}, args...)...)
	defer rows.Close()
	for rows.Next() {
		var (
			r       outbox.Record
			payload []byte
			first   pgtype.Timestamptz
			p       int64
		)
		if err := rows.Scan(&r.ID, &r.AggregateType, &r.AggregateID, &r.Type, &payload, &r.Headers,
			&r.IdempotencyKey, &r.Sequence, &r.Attempts, &r.LastError, &r.CreatedAt, &first, &p); err != nil {
			return nil, nil, fmt.Errorf("pgstore: claim: scan: %w", err)
		}
		r.Payload = payload
		if first.Valid {
			r.FirstFailedAt = first.Time
		}
		records = append(records, r)
		pos = append(pos, p)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("pgstore: claim: %w", err)
	}
	return records, pos, nil
}

// batch is a claim: its transaction has deleted the records and stays open
// until Finish commits or Release rolls back. tx is nil for an empty batch
// and once the batch has ended.
type batch struct {
	d       *Driver
	tx      pgx.Tx
	records []outbox.Record
	pos     []int64 // outbox position of each record, kept on retry
}

func (b *batch) Records() []outbox.Record { return b.records }

// Release rolls the claim back, returning the events untouched. It is a
// no-op on a batch that has already ended.
func (b *batch) Release(ctx context.Context) error {
	if b.tx == nil {
		return nil
	}
	tx := b.tx
	b.tx = nil
	if err := rollbackAfter(ctx, tx, nil); err != nil {
		return fmt.Errorf("pgstore: release: %w", err)
	}
	return nil
}

const retrySQL = `
INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at, pos, attempts, last_error, next_attempt_at, first_failed_at)
SELECT r.id, r.aggregate_type, r.aggregate_id, r.event_type, r.payload::jsonb, r.headers::jsonb,
	r.idempotency_key, r.sequence, r.created_at, r.pos, r.attempts + 1, r.last_error,
	now() + r.delay_us * interval '1 microsecond', coalesce(r.first_failed_at, now())
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::bigint[], $9::timestamptz[], $10::bigint[], $11::int[], $12::text[],
	$13::bigint[], $14::timestamptz[])
	AS r(id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at, pos, attempts, last_error, delay_us, first_failed_at)`

const deadLetterSQL = `
INSERT INTO {{dlq}} (event_id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at, error_message, retry_count, first_failed_at, moved_to_dlq_at)
SELECT r.id, r.aggregate_type, r.aggregate_id, r.event_type, r.payload::jsonb, r.headers::jsonb,
	r.idempotency_key, r.sequence, r.created_at, r.error_message, r.attempts + 1,
	coalesce(r.first_failed_at, now()), now()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::bigint[], $9::timestamptz[], $10::text[], $11::int[], $12::timestamptz[])
	WITH ORDINALITY AS r(id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at, error_message, attempts, first_failed_at, ord)
ORDER BY r.ord`

// rowArrays are the columns of a set of records, for unnest.
type rowArrays struct {
	ids                               []uuid.UUID
	aggTypes, aggIDs, types, payloads []string
	headers                           []string
	keys                              []pgtype.Text
	seqs, pos, delays                 []int64
	created                           []time.Time
	firstFailed                       []pgtype.Timestamptz
	attempts                          []int32
	errs                              []string
	count                             int
}

func (a *rowArrays) add(r *outbox.Record, pos int64, o outbox.Outcome) error {
	h, err := encodeHeaders(r.Headers)
	if err != nil {
		return err
	}
	a.ids = append(a.ids, r.ID)
	a.aggTypes = append(a.aggTypes, r.AggregateType)
	a.aggIDs = append(a.aggIDs, r.AggregateID)
	a.types = append(a.types, r.Type)
	a.payloads = append(a.payloads, string(r.Payload))
	a.headers = append(a.headers, h)
	a.keys = append(a.keys, nullText(r.IdempotencyKey))
	a.seqs = append(a.seqs, r.Sequence)
	a.pos = append(a.pos, pos)
	a.delays = append(a.delays, max(o.Delay.Microseconds(), 0))
	a.created = append(a.created, r.CreatedAt)
	a.firstFailed = append(a.firstFailed, pgtype.Timestamptz{Time: r.FirstFailedAt, Valid: !r.FirstFailedAt.IsZero()})
	a.attempts = append(a.attempts, int32(r.Attempts)) // an integer column
	a.errs = append(a.errs, storableText(o.Error))
	a.count++
	return nil
}

// Finish applies the outcomes and commits, in one transaction: published
// events stay deleted, retried ones go back with their position, dead ones
// move to the dead-letter table. If Finish fails, the claim is rolled back and the
// events are claimable again; a later Release is a no-op.
func (b *batch) Finish(ctx context.Context, outcomes []outbox.Outcome) (err error) {
	if len(outcomes) != len(b.records) {
		return errors.Join(
			fmt.Errorf("pgstore: finish: %d outcomes for %d records", len(outcomes), len(b.records)),
			b.Release(ctx))
	}
	if b.tx == nil {
		if len(b.records) > 0 {
			return errors.New("pgstore: finish: batch already ended")
		}
		return nil
	}
	tx := b.tx
	b.tx = nil
	defer func() {
		if err != nil {
			err = rollbackAfter(ctx, tx, err)
		}
	}()

	var retry, dead rowArrays
	for i, o := range outcomes {
		r := &b.records[i]
		switch o.Kind {
		case outbox.OutcomePublished:
		case outbox.OutcomeRetry:
			err = retry.add(r, b.pos[i], o)
		case outbox.OutcomeDeadLetter:
			err = dead.add(r, b.pos[i], o)
		default:
			err = fmt.Errorf("pgstore: finish: record %d: unknown outcome kind %d", i, o.Kind)
		}
		if err != nil {
			return err
		}
	}
	if retry.count+dead.count > 0 {
		pb := &pgx.Batch{}
		if retry.count > 0 {
			pb.Queue(b.d.sql.retry, retry.ids, retry.aggTypes, retry.aggIDs, retry.types, retry.payloads, retry.headers,
				retry.keys, retry.seqs, retry.created, retry.pos, retry.attempts, retry.errs, retry.delays, retry.firstFailed)
		}
		if dead.count > 0 {
			pb.Queue(b.d.sql.deadLetter, dead.ids, dead.aggTypes, dead.aggIDs, dead.types, dead.payloads, dead.headers,
				dead.keys, dead.seqs, dead.created, dead.errs, dead.attempts, dead.firstFailed)
		}
		if err := tx.SendBatch(ctx, pb).Close(); err != nil {
			return fmt.Errorf("pgstore: finish: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: finish: commit: %w", err)
	}
	return nil
}
