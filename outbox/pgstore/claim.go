package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
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
// successive claims take aggregates round robin. Rows are found, locked and
// deleted by their ctid (outbox rows are never updated, and a row the
// statement's snapshot sees cannot be vacuumed away under it), which spares
// two primary-key lookups per event. %[1]s is the parking
// condition, %[2]s bounds the second walk, which wraps around to the start.
const claimSQL = `
DELETE FROM {{outbox}}
WHERE ctid = ANY (ARRAY(
	WITH RECURSIVE walk(aggregate_type, aggregate_id, row) AS (
		(SELECT x.aggregate_type, x.aggregate_id, x.ctid FROM {{outbox}} x
		 WHERE (x.aggregate_type, x.aggregate_id) > ($2::text, $3::text) %[2]s
		 ORDER BY x.aggregate_type, x.aggregate_id, x.sequence LIMIT 1)
		UNION ALL
		SELECT n.aggregate_type, n.aggregate_id, n.ctid FROM walk w
		CROSS JOIN LATERAL (
			SELECT x.aggregate_type, x.aggregate_id, x.ctid FROM {{outbox}} x
			WHERE (x.aggregate_type, x.aggregate_id) > (w.aggregate_type, w.aggregate_id) %[2]s
			ORDER BY x.aggregate_type, x.aggregate_id, x.sequence LIMIT 1) n
	)
	SELECT o.ctid FROM walk w
	JOIN {{outbox}} o ON o.ctid = w.row
	WHERE o.next_attempt_at <= now()
	  %[1]s
	LIMIT $1
	FOR UPDATE OF o SKIP LOCKED))
RETURNING ` + claimReturning

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

// runSQL takes, after the heads a claim holds ($2–$4: their aggregates and
// sequences), the events that follow each head in its aggregate: at most $5
// per head and $1 in all, in sequence order, each run stopping at the first
// event that is not due or (%[1]s) is parked. No other claim can hold them:
// a claim takes an aggregate's later events only with its head, which this
// claim holds (or, for ClaimParams.Follow, a batch of the same worker
// still in flight holds).
const runSQL = `
DELETE FROM {{outbox}}
WHERE ctid = ANY (ARRAY(
	SELECT r.ctid FROM unnest($2::text[], $3::text[], $4::bigint[]) AS h(aggregate_type, aggregate_id, sequence)
	CROSS JOIN LATERAL (
		SELECT n.ctid FROM (
			SELECT o.ctid, bool_and(o.next_attempt_at <= now() %[1]s) OVER (ORDER BY o.sequence) AS runs
			FROM (SELECT x.ctid, x.* FROM {{outbox}} x
			      WHERE x.aggregate_type = h.aggregate_type AND x.aggregate_id = h.aggregate_id
			        AND x.sequence > h.sequence
			      ORDER BY x.sequence LIMIT $5) o
		) n WHERE n.runs) r
	LIMIT $1))
RETURNING ` + claimReturning

// emptyHeaders is how PostgreSQL writes a jsonb object without keys.
var emptyHeaders = []byte("{}")

// claimReturning is what both claim statements return of an event.
const claimReturning = `id, aggregate_type, aggregate_id, event_type, payload, headers,
	coalesce(idempotency_key, ''), sequence, attempts, coalesce(last_error, ''),
	created_at, first_failed_at, pos`

// aggregateKey orders aggregates as the claim walks them.
type aggregateKey struct{ typ, id string }

// Claim deletes up to p.Limit due head events in a transaction that stays
// open in the returned Batch until Finish or Release.
//
// A run read past rows another transaction held (a batch claimed with
// Follow that gave them back) skips them, leaving a gap: such a claim is
// rolled back and taken again, which finds the rows given back in place.
func (d *Driver) Claim(ctx context.Context, p outbox.ClaimParams) (outbox.Batch, error) {
	for attempt := 1; ; attempt++ {
		b, gap, err := d.claimOnce(ctx, p)
		if err != nil || gap == "" {
			return b, err
		}
		if attempt == maxClaimAttempts {
			return nil, fmt.Errorf("pgstore: claim: %d tries found runs with gaps, the last at %s", attempt, gap)
		}
	}
}

// maxClaimAttempts bounds the claims Claim retries after a gap.
const maxClaimAttempts = 3

// claimOnce makes one claim. When the runs it read have a gap, it rolls
// the claim back and returns where the gap was.
func (d *Driver) claimOnce(ctx context.Context, p outbox.ClaimParams) (_ outbox.Batch, gap string, _ error) {
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
		return nil, "", fmt.Errorf("pgstore: claim: begin: %w", err)
	}
	from, err := d.startOfWalk(ctx, tx)
	if err != nil {
		return nil, "", rollbackAfter(ctx, tx, err)
	}
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
	if err == nil && p.RunLength > 1 && len(records) > 0 && len(records) < limit {
		records, pos, err = d.claimRuns(ctx, tx, p, limit, records, pos)
	}
	if err == nil && len(p.Follow) > 0 && len(records) < limit {
		records, pos, err = d.claimFollow(ctx, tx, p, limit, records, pos)
	}
	if err == nil {
		gap = gapIn(records, p.Follow)
	}
	if err != nil || gap != "" {
		return nil, gap, rollbackAfter(ctx, tx, err)
	}
	if len(records) == 0 {
		if err := rollbackAfter(ctx, tx, nil); err != nil {
			return nil, "", fmt.Errorf("pgstore: claim: %w", err)
		}
		return &batch{d: d}, "", nil
	}
	d.cursorMu.Lock()
	d.cursor = walkEnd(from, records)
	d.cursorMu.Unlock()
	idx := batchOrder(records, pos)
	b := &batch{d: d, tx: tx, records: make([]outbox.Record, len(idx)), pos: make([]int64, len(idx))}
	for j, i := range idx {
		b.records[j], b.pos[j] = records[i], pos[i]
	}
	return b, "", nil
}

// randomAggregateSQL picks the aggregate of an event at a random position
// (Config.SpreadStart); both ends of pos come from its index.
const randomAggregateSQL = `
SELECT aggregate_type, aggregate_id FROM {{outbox}}
WHERE pos >= (SELECT min(pos) + floor(random() * (max(pos) - min(pos) + 1))::bigint FROM {{outbox}})
ORDER BY pos LIMIT 1`

// startOfWalk returns where a claim's walk starts: the cursor, set at
// random by the first claim that finds events with Config.SpreadStart.
func (d *Driver) startOfWalk(ctx context.Context, tx pgx.Tx) (aggregateKey, error) {
	d.cursorMu.Lock()
	from, spread := d.cursor, d.spread
	d.cursorMu.Unlock()
	if !spread {
		return from, nil
	}
	var k aggregateKey
	err := tx.QueryRow(ctx, d.sql.randomAggregate).Scan(&k.typ, &k.id)
	if errors.Is(err, pgx.ErrNoRows) {
		return from, nil // nothing to spread over yet: try again next time
	}
	if err != nil {
		return from, fmt.Errorf("pgstore: claim: a random start: %w", err)
	}
	d.cursorMu.Lock()
	d.spread = false
	d.cursorMu.Unlock()
	return k, nil
}

// gapIn returns the first aggregate whose events in records are not
// consecutive sequences (continuing its tail in follow, if it has one
// there and the walk took no head of it), as "type/id#sequence", or "".
func gapIn(records []outbox.Record, follow []outbox.Tail) string {
	seqs := make(map[aggregateKey][]int64, len(records))
	for i := range records {
		k := aggregateKey{records[i].AggregateType, records[i].AggregateID}
		seqs[k] = append(seqs[k], records[i].Sequence)
	}
	tails := make(map[aggregateKey]int64, len(follow))
	for _, t := range follow {
		tails[aggregateKey{t.AggregateType, t.AggregateID}] = t.Sequence
	}
	for k, s := range seqs {
		slices.Sort(s)
		prev, ok := tails[k]
		if ok && s[0] <= prev {
			ok = false // the walk took its head: the batch in flight ended
		}
		for i, q := range s {
			if (i > 0 || ok) && q != prev+1 {
				return fmt.Sprintf("%s/%s#%d", k.typ, k.id, q)
			}
			prev = q
		}
	}
	return ""
}

// claimRuns appends to a claim's heads the runs that follow them, within
// the batch's limit.
func (d *Driver) claimRuns(ctx context.Context, tx pgx.Tx, p outbox.ClaimParams, limit int, records []outbox.Record, pos []int64) ([]outbox.Record, []int64, error) {
	heads := make([]outbox.Tail, len(records))
	for i := range records {
		heads[i] = outbox.Tail{AggregateType: records[i].AggregateType, AggregateID: records[i].AggregateID, Sequence: records[i].Sequence}
	}
	budget := limit - len(records)
	return d.claimAfter(ctx, tx, p, heads, min(p.RunLength-1, budget), budget, records, pos)
}

// claimFollow appends the events that follow p.Follow's tails, within the
// batch's limit. Rows this claim took already are gone for it, so an
// aggregate whose head the walk took (its batch in flight having ended)
// continues where that run stopped.
func (d *Driver) claimFollow(ctx context.Context, tx pgx.Tx, p outbox.ClaimParams, limit int, records []outbox.Record, pos []int64) ([]outbox.Record, []int64, error) {
	budget := limit - len(records)
	return d.claimAfter(ctx, tx, p, p.Follow, budget, budget, records, pos)
}

// claimAfter runs the run statement after each of heads: at most each
// events per head and budget in all.
func (d *Driver) claimAfter(ctx context.Context, tx pgx.Tx, p outbox.ClaimParams, heads []outbox.Tail, each, budget int, records []outbox.Record, pos []int64) ([]outbox.Record, []int64, error) {
	query := d.sql.runs[1]
	if p.MoveOnPastDeadLetters {
		query = d.sql.runs[0]
	}
	types, ids, seqs := make([]string, len(heads)), make([]string, len(heads)), make([]int64, len(heads))
	for i, h := range heads {
		types[i], ids[i], seqs[i] = h.AggregateType, h.AggregateID, h.Sequence
	}
	return claimPass(ctx, tx, query, budget, records, pos, types, ids, seqs, each)
}

// batchOrder returns the order a batch hands its records out in:
// RETURNING has none. Aggregates come oldest head first, and each
// aggregate's events in sequence order (a replayed head may be younger than
// the events behind it).
func batchOrder(records []outbox.Record, pos []int64) []int {
	type key struct{ typ, id string }
	headPos := make(map[key]int64, len(records))
	for i := range records {
		k := key{records[i].AggregateType, records[i].AggregateID}
		if p, ok := headPos[k]; !ok || pos[i] < p {
			headPos[k] = pos[i]
		}
	}
	idx := make([]int, len(records))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		ra, rb := &records[a], &records[b]
		ha := headPos[key{ra.AggregateType, ra.AggregateID}]
		hb := headPos[key{rb.AggregateType, rb.AggregateID}]
		return cmp.Or(cmp.Compare(ha, hb), cmp.Compare(ra.Sequence, rb.Sequence))
	})
	return idx
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
			headers []byte
			first   pgtype.Timestamptz
			p       int64
		)
		if err := rows.Scan(&r.ID, &r.AggregateType, &r.AggregateID, &r.Type, &payload, &headers,
			&r.IdempotencyKey, &r.Sequence, &r.Attempts, &r.LastError, &r.CreatedAt, &first, &p); err != nil {
			return nil, nil, fmt.Errorf("pgstore: claim: scan: %w", err)
		}
		// Most events carry no headers: "{}" needs no decoding (it was a
		// tenth of the relay's CPU in a drain).
		if !bytes.Equal(headers, emptyHeaders) {
			if err := json.Unmarshal(headers, &r.Headers); err != nil {
				return nil, nil, fmt.Errorf("pgstore: claim: headers of event %s: %w", r.ID, err)
			}
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

// releaseSQL puts events back as they were claimed: not sent, so neither
// an attempt nor a delay is charged.
const releaseSQL = `
INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at, pos, attempts, last_error, first_failed_at)
SELECT r.id, r.aggregate_type, r.aggregate_id, r.event_type, r.payload::jsonb, r.headers::jsonb,
	r.idempotency_key, r.sequence, r.created_at, r.pos, r.attempts, nullif(r.last_error, ''), r.first_failed_at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::bigint[], $9::timestamptz[], $10::bigint[], $11::int[], $12::text[], $13::timestamptz[])
	AS r(id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at, pos, attempts, last_error, first_failed_at)`

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

	var retry, dead, release rowArrays
	for i, o := range outcomes {
		r := &b.records[i]
		switch o.Kind {
		case outbox.OutcomePublished:
		case outbox.OutcomeReleased:
			err = release.add(r, b.pos[i], outbox.Outcome{Error: r.LastError})
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
	if retry.count+dead.count+release.count > 0 {
		pb := &pgx.Batch{}
		if release.count > 0 {
			pb.Queue(b.d.sql.release, release.ids, release.aggTypes, release.aggIDs, release.types, release.payloads, release.headers,
				release.keys, release.seqs, release.created, release.pos, release.attempts, release.errs, release.firstFailed)
		}
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
