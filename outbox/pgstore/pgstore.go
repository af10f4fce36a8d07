// Package pgstore is the PostgreSQL driver of the outbox engine: an
// outbox.Driver[pgx.Tx] on a pgxpool.Pool.
//
//	driver := pgstore.New(pool, pgstore.Config{})
//	if err := driver.Migrate(ctx); err != nil { ... }
//	client := outbox.NewClient[pgx.Tx](driver)
//
// Events live in order_outbox until the relay publishes them. Claim deletes a
// batch of head events inside a transaction that stays open while the relay
// publishes; Finish re-inserts the failed ones (or moves them to
// order_outbox_dlq) and commits, Release rolls back. A relay that dies
// mid-batch loses its connection, PostgreSQL rolls the claim back and the
// events reappear; a relay that hangs loses its claim after Config.ClaimTimeout
// (idle_in_transaction_session_timeout).
package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/outbox"
)

// Defaults for Config.
const (
	DefaultChannel = "herald_outbox"
	// DefaultClaimTimeout ends a hung relay's claim. It is above twice the
	// relay's default publish timeout (the longest a healthy relay holds a
	// claim) and below JetStream's default two-minute duplicate window, so
	// events republished after a hang are still dropped as duplicates (G5).
	DefaultClaimTimeout = 90 * time.Second
)

// Limits of ListDeadLetters.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// DefaultClaimLimit is the batch size Claim uses when ClaimParams.Limit is not positive.
const DefaultClaimLimit = 100

// Config tunes a Driver. The zero value is usable.
type Config struct {
	// Channel is the LISTEN/NOTIFY channel that wakes relays; default
	// DefaultChannel.
	Channel string
	// DisableNotify stops InsertTx and Notify from sending pg_notify and
	// makes Listen wait for ctx without listening (for connection poolers
	// that break LISTEN); relays then find events by polling, except that
	// Notify still wakes those listening through this Driver in-process.
	DisableNotify bool
	// NotifyAfterCommit moves the wake-up out of the writing transaction:
	// InsertTx sends nothing, and the caller calls Driver.Notify once its
	// transaction has committed (WithTx, and so Client.Enqueue, do it
	// themselves). PostgreSQL serialises the commits of transactions that
	// notify, so with many concurrent writers this roughly doubles enqueue
	// throughput; a Notify the caller forgets costs only latency, as the
	// relay's fallback poll still finds the events. Notify also wakes the
	// relays of this process that listen through this Driver directly.
	NotifyAfterCommit bool
	// ClaimTimeout bounds how long a claim transaction may sit idle (the
	// relay publishing); after it the server ends the session and the events
	// are claimable again. Default DefaultClaimTimeout. It must exceed the
	// longest a relay holds a batch (outbox.Relay: twice its PublishTimeout).
	ClaimTimeout time.Duration
}

// Driver is the PostgreSQL outbox driver. It is safe for concurrent use.
type Driver struct {
	pool       *pgxpool.Pool
	cfg        Config
	claimBegin string

	cursorMu sync.Mutex
	cursor   aggregateKey // where the next claim's walk starts (exclusive)

	notifyMu      sync.Mutex
	notifying     bool // a goroutine is sending notifications
	notifyPending bool // a commit happened after its last one was sent

	localMu sync.Mutex                // serialises changes to local
	local   atomic.Pointer[[]*func()] // the wake functions of this process's Listen calls, copied on change
}

var _ outbox.Driver[pgx.Tx] = (*Driver)(nil)

// New returns a driver on pool. Call Migrate before first use.
func New(pool *pgxpool.Pool, cfg Config) *Driver {
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = DefaultClaimTimeout
	}
	ms := max(cfg.ClaimTimeout.Milliseconds(), 1)
	return &Driver{
		pool: pool,
		cfg:  cfg,
		// SET LOCAL takes no parameters; the value is an integer we format.
		claimBegin: "BEGIN; SET LOCAL idle_in_transaction_session_timeout = " + strconv.FormatInt(ms, 10),
	}
}

// Pool returns the pool the driver runs on.
func (d *Driver) Pool() *pgxpool.Pool { return d.pool }

// WithTx runs fn in a new transaction and commits it when fn returns nil. fn's
// error is returned unchanged.
func (d *Driver) WithTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if err := pgx.BeginFunc(ctx, d.pool, fn); err != nil {
		return err
	}
	if d.cfg.NotifyAfterCommit {
		d.Notify()
	}
	return nil
}

// Notify wakes the relays: those that listen through this Driver at once,
// in-process, and those of other processes through pg_notify, sent from a
// connection of its own. With Config.NotifyAfterCommit, call it after each
// commit that enqueued events. It never blocks: notifications requested
// while one is being sent are coalesced into one more, sent after it, so a
// burst of commits costs a few notifications rather than one each.
func (d *Driver) Notify() {
	d.wakeLocal()
	if d.cfg.DisableNotify {
		return
	}
	d.notifyMu.Lock()
	defer d.notifyMu.Unlock()
	if d.notifying {
		d.notifyPending = true
		return
	}
	d.notifying = true
	go d.sendNotifications()
}

func (d *Driver) sendNotifications() {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := d.pool.Exec(ctx, notifyAsyncSQL, d.cfg.Channel)
		cancel()
		d.notifyMu.Lock()
		// A failed notification is not retried: the relays' poll finds the
		// events, and a pool that is closing must not keep this running.
		if err != nil || !d.notifyPending {
			d.notifying, d.notifyPending = false, false
			d.notifyMu.Unlock()
			return
		}
		d.notifyPending = false
		d.notifyMu.Unlock()
		// Each notification is a transaction that takes PostgreSQL's notify
		// lock at its commit; under a stream of commits one per interval
		// keeps the relays awake.
		time.Sleep(d.notifyPause())
	}
}

// The least time between two notifications of a Driver under a stream of
// commits, which bounds the wake-up delay coalescing adds. When a relay of
// this process listens, Notify has woken it already; the other processes'
// relays only share the load, and a longer pause spares PostgreSQL most of
// the notifications.
const (
	notifyInterval       = time.Millisecond
	notifyIntervalShared = 25 * time.Millisecond
)

func (d *Driver) notifyPause() time.Duration {
	if l := d.local.Load(); l != nil && len(*l) > 0 {
		return notifyIntervalShared
	}
	return notifyInterval
}

// wakeLocal calls the wake function of every Listen call of this Driver.
// It holds no lock while it does: a wake function may take its own.
func (d *Driver) wakeLocal() {
	if l := d.local.Load(); l != nil {
		for _, wake := range *l {
			(*wake)()
		}
	}
}

// addLocal registers a Listen call's wake function until the returned
// function is called.
func (d *Driver) addLocal(wake func()) (remove func()) {
	key := &wake
	d.changeLocal(func(l []*func()) []*func() { return append(l, key) })
	return func() {
		d.changeLocal(func(l []*func()) []*func() {
			return slices.DeleteFunc(l, func(w *func()) bool { return w == key })
		})
	}
}

// changeLocal replaces the list of wake functions with change's result on a
// copy, so that wakeLocal can read it without a lock.
func (d *Driver) changeLocal(change func([]*func()) []*func()) {
	d.localMu.Lock()
	defer d.localMu.Unlock()
	var l []*func()
	if old := d.local.Load(); old != nil {
		l = slices.Clone(*old)
	}
	l = change(l)
	d.local.Store(&l)
}

// insertSQL bumps the aggregate's counter and inserts the event in one
// statement. The counter row stays locked until the caller's transaction
// ends, which orders one aggregate's writers and makes a rollback undo the bump.
const insertSQL = `
WITH seq AS (
	INSERT INTO order_outbox_sequences AS s (aggregate_type, aggregate_id, last_sequence)
	VALUES ($2, $3, 1)
	ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last_sequence = s.last_sequence + 1
	RETURNING last_sequence
)
INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, idempotency_key, sequence)
SELECT $1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb, $7, seq.last_sequence FROM seq
RETURNING sequence`

// insertNumberedSQL writes an event the caller numbered itself (its row
// lock on the aggregate orders the writers); the counter is not touched.
const insertNumberedSQL = `
INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, idempotency_key, sequence)
VALUES ($1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)`

const notifySQL = `SELECT pg_notify($1, '')`

// notifyAsyncSQL is the notifier's own transaction. A NOTIFY gives its
// transaction an xid, so its commit waits for a WAL flush like a write's
// would; the wake-up is only a hint (a lost one costs a poll interval), so it
// commits without waiting and leaves the writers' flushes alone.
const notifyAsyncSQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')`

// InsertTx writes events in tx in one round trip, with a notification that
// wakes relays when tx commits (unless Config.NotifyAfterCommit). Events
// are expected to be validated and to carry ids (outbox.Client does both).
// An event without a Sequence takes the next one from its aggregate's
// counter row.
func (d *Driver) InsertTx(ctx context.Context, tx pgx.Tx, events []outbox.Event) ([]outbox.Enqueued, error) {
	if len(events) == 0 {
		return nil, nil
	}
	notifyInTx := !d.cfg.DisableNotify && !d.cfg.NotifyAfterCommit
	if len(events) == 1 && !notifyInTx {
		// The common case: a plain statement costs less than a batch.
		e := &events[0]
		query, args, err := insertArgs(e, 0)
		if err != nil {
			return nil, err
		}
		seq := e.Sequence
		if seq > 0 {
			_, err = tx.Exec(ctx, query, args...)
		} else {
			err = tx.QueryRow(ctx, query, args...).Scan(&seq)
		}
		if err != nil {
			return nil, insertError(err)
		}
		return []outbox.Enqueued{{ID: e.ID, Sequence: seq}}, nil
	}
	// Take the counter locks of several aggregates in one global order, so
	// that two transactions writing the same aggregates cannot deadlock on
	// them. The sort is stable: one aggregate's events keep their order.
	order := make([]int, len(events))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ea, eb := &events[a], &events[b]
		return cmp.Or(cmp.Compare(ea.AggregateType, eb.AggregateType), cmp.Compare(ea.AggregateID, eb.AggregateID))
	})

	b := &pgx.Batch{}
	for _, i := range order {
		query, args, err := insertArgs(&events[i], i)
		if err != nil {
			return nil, err
		}
		b.Queue(query, args...)
	}
	if notifyInTx {
		b.Queue(notifySQL, d.cfg.Channel)
	}

	br := tx.SendBatch(ctx, b)
	out := make([]outbox.Enqueued, len(events))
	for _, i := range order {
		seq := events[i].Sequence
		var err error
		if seq > 0 {
			_, err = br.Exec()
		} else {
			err = br.QueryRow().Scan(&seq)
		}
		if err != nil {
			_ = br.Close()
			return nil, insertError(err)
		}
		out[i] = outbox.Enqueued{ID: events[i].ID, Sequence: seq}
	}
	if notifyInTx {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("pgstore: notify: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, insertError(err)
	}
	return out, nil
}

// insertArgs returns the statement that writes e, the i-th event, and its
// arguments. The statement returns the sequence unless e has one already.
func insertArgs(e *outbox.Event, i int) (string, []any, error) {
	if e.ID == uuid.Nil {
		return "", nil, fmt.Errorf("%w: event %d has no id", outbox.ErrInvalidEvent, i)
	}
	headers, err := encodeHeaders(e.Headers)
	if err != nil {
		return "", nil, fmt.Errorf("%w: event %d: headers: %w", outbox.ErrInvalidEvent, i, err)
	}
	if e.Sequence > 0 {
		return insertNumberedSQL, []any{e.ID, e.AggregateType, e.AggregateID, e.Type, string(e.Payload), headers, nullText(e.IdempotencyKey), e.Sequence}, nil
	}
	return insertSQL, []any{e.ID, e.AggregateType, e.AggregateID, e.Type, string(e.Payload), headers, nullText(e.IdempotencyKey)}, nil
}

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
DELETE FROM order_outbox
WHERE id = ANY (ARRAY(
	WITH RECURSIVE walk(aggregate_type, aggregate_id, id) AS (
		(SELECT x.aggregate_type, x.aggregate_id, x.id FROM order_outbox x
		 WHERE (x.aggregate_type, x.aggregate_id) > ($2::text, $3::text) %[2]s
		 ORDER BY x.aggregate_type, x.aggregate_id, x.sequence LIMIT 1)
		UNION ALL
		SELECT n.aggregate_type, n.aggregate_id, n.id FROM walk w
		CROSS JOIN LATERAL (
			SELECT x.aggregate_type, x.aggregate_id, x.id FROM order_outbox x
			WHERE (x.aggregate_type, x.aggregate_id) > (w.aggregate_type, w.aggregate_id) %[2]s
			ORDER BY x.aggregate_type, x.aggregate_id, x.sequence LIMIT 1) n
	)
	SELECT o.id FROM walk w
	JOIN order_outbox o ON o.id = w.id
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
		SELECT 1 FROM order_outbox_dlq d
		WHERE d.aggregate_type = o.aggregate_type
		  AND d.aggregate_id = o.aggregate_id
		  AND d.sequence < o.sequence
		  AND NOT d.reprocessed AND d.discarded_at IS NULL)`

// The claim statements: [parking][wrap].
var claimSQLs = [2][2]string{
	{fmt.Sprintf(claimSQL, "", ""), fmt.Sprintf(claimSQL, "", wrapBoundSQL)},
	{fmt.Sprintf(claimSQL, parkedSQL, ""), fmt.Sprintf(claimSQL, parkedSQL, wrapBoundSQL)},
}

// aggregateKey orders aggregates as the claim walks them.
type aggregateKey struct{ typ, id string }

// Claim deletes up to p.Limit due head events in a transaction that stays
// open in the returned Batch until Finish or Release.
func (d *Driver) Claim(ctx context.Context, p outbox.ClaimParams) (outbox.Batch, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultClaimLimit
	}
	queries := claimSQLs[1]
	if p.MoveOnPastDeadLetters {
		queries = claimSQLs[0]
	}
	tx, err := d.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: d.claimBegin})
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
INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers,
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
INSERT INTO order_outbox_dlq (event_id, aggregate_type, aggregate_id, event_type, payload, headers,
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
// move to order_outbox_dlq. If Finish fails, the claim is rolled back and the
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
			pb.Queue(retrySQL, retry.ids, retry.aggTypes, retry.aggIDs, retry.types, retry.payloads, retry.headers,
				retry.keys, retry.seqs, retry.created, retry.pos, retry.attempts, retry.errs, retry.delays, retry.firstFailed)
		}
		if dead.count > 0 {
			pb.Queue(deadLetterSQL, dead.ids, dead.aggTypes, dead.aggIDs, dead.types, dead.payloads, dead.headers,
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

// Listen holds a connection of its own LISTENing on the channel and calls
// wake for every notification, and once as soon as it listens (events may
// have been committed while nobody listened). Until it returns, Notify calls
// wake too, in-process; wake must not block. It returns nil when ctx ends
// and an error when the connection fails.
func (d *Driver) Listen(ctx context.Context, wake func()) error {
	defer d.addLocal(wake)()
	if d.cfg.DisableNotify {
		<-ctx.Done()
		return nil
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pgstore: listen: acquire: %w", err)
	}
	defer func() {
		// Leave no LISTEN behind on a pooled connection: UNLISTEN, or drop
		// the connection when that is not possible.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if conn.Conn().IsClosed() {
			conn.Release()
			return
		}
		if _, err := conn.Exec(cctx, "UNLISTEN *"); err != nil {
			_ = conn.Hijack().Close(cctx)
			return
		}
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{d.cfg.Channel}.Sanitize()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pgstore: listen: %w", err)
	}
	wake()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pgstore: listen: %w", err)
		}
		wake()
	}
}

func (d *Driver) notify(ctx context.Context, tx pgx.Tx) error {
	if d.cfg.DisableNotify {
		return nil
	}
	_, err := tx.Exec(ctx, notifySQL, d.cfg.Channel)
	return err
}

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
	case "":
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
	if f.AfterID > 0 {
		conds = append(conds, "id > "+arg(f.AfterID))
	}
	return strings.Join(conds, " AND "), args, nil
}

// ListDeadLetters lists dead letters matching f by id: at most f.Limit
// (default DefaultListLimit, at most MaxListLimit).
func (d *Driver) ListDeadLetters(ctx context.Context, f outbox.DeadLetterFilter) ([]outbox.DeadLetter, error) {
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
	q := "SELECT " + dlqColumns + " FROM order_outbox_dlq WHERE " + where +
		" ORDER BY id LIMIT $" + strconv.Itoa(len(args))
	rows, _ := d.pool.Query(ctx, q, args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outbox.DeadLetter, error) {
		return scanDeadLetter(row)
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: list dead letters: %w", err)
	}
	return out, nil
}

// GetDeadLetter returns one dead letter or outbox.ErrNotFound.
func (d *Driver) GetDeadLetter(ctx context.Context, id int64) (outbox.DeadLetter, error) {
	dl, err := scanDeadLetter(d.pool.QueryRow(ctx, "SELECT "+dlqColumns+" FROM order_outbox_dlq WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return outbox.DeadLetter{}, fmt.Errorf("pgstore: dead letter %d: %w", id, outbox.ErrNotFound)
	}
	if err != nil {
		return outbox.DeadLetter{}, fmt.Errorf("pgstore: get dead letter: %w", err)
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
	UPDATE order_outbox_dlq SET reprocessed = true, reprocessed_at = now()
	WHERE %s AND NOT reprocessed AND discarded_at IS NULL
	RETURNING id, event_id, aggregate_type, aggregate_id, event_type, payload, headers,
		idempotency_key, sequence, created_at
)
INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at)
SELECT event_id, aggregate_type, aggregate_id, event_type, payload, headers,
	CASE WHEN EXISTS (SELECT 1 FROM order_outbox o WHERE o.idempotency_key = r.idempotency_key)
		THEN NULL ELSE r.idempotency_key END,
	sequence, created_at
FROM r ORDER BY r.id`

var replayOneSQL = fmt.Sprintf(replaySQL, "id = $1")

// ReplayDeadLetter puts the dead letter's event back in the outbox exactly
// once. It returns outbox.ErrNotFound or outbox.ErrAlreadyResolved.
func (d *Driver) ReplayDeadLetter(ctx context.Context, id int64) error {
	err := d.WithTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, replayOneSQL, id)
		if err != nil {
			return resolveError(err)
		}
		if tag.RowsAffected() == 0 {
			return d.unresolvable(ctx, tx, id)
		}
		return d.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("pgstore: replay dead letter %d: %w", id, err)
	}
	return nil
}

// ReplayDeadLetters replays, in one transaction, the open dead letters that
// match f (its State must be "" or open), in id order, at most f.Limit when
// it is positive.
func (d *Driver) ReplayDeadLetters(ctx context.Context, f outbox.DeadLetterFilter) (int, error) {
	if f.State != "" && f.State != outbox.DeadLetterOpen {
		if _, _, err := filterSQL(f, nil); err != nil {
			return 0, err
		}
		return 0, nil // only open dead letters can be replayed
	}
	f.State = outbox.DeadLetterOpen
	where, args, err := filterSQL(f, nil)
	if err != nil {
		return 0, err
	}
	sel := "SELECT id FROM order_outbox_dlq WHERE " + where + " ORDER BY id"
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
		tag, err := tx.Exec(ctx, fmt.Sprintf(replaySQL, "id = ANY (ARRAY("+sel+"))"), args...)
		if err != nil {
			return resolveError(err)
		}
		n = tag.RowsAffected()
		if n == 0 {
			return nil
		}
		return d.notify(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: replay dead letters: %w", err)
	}
	return int(n), nil
}

// DiscardDeadLetter resolves a dead letter without publishing it, recording
// reason. The aggregate's parked events flow again.
func (d *Driver) DiscardDeadLetter(ctx context.Context, id int64, reason string) error {
	err := d.WithTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE order_outbox_dlq SET discarded_at = now(), discard_reason = $2
			WHERE id = $1 AND NOT reprocessed AND discarded_at IS NULL`, id, reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return d.unresolvable(ctx, tx, id)
		}
		return d.notify(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("pgstore: discard dead letter %d: %w", id, err)
	}
	return nil
}

// unresolvable explains why dead letter id could not be resolved.
func (d *Driver) unresolvable(ctx context.Context, tx pgx.Tx, id int64) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM order_outbox_dlq WHERE id = $1)", id).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return outbox.ErrAlreadyResolved
	}
	return outbox.ErrNotFound
}

// Stats counts the backlog and the open dead letters.
func (d *Driver) Stats(ctx context.Context) (outbox.Stats, error) {
	var (
		s      outbox.Stats
		oldest pgtype.Timestamptz
	)
	err := d.pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE attempts > 0), min(created_at),
			(SELECT count(*) FROM order_outbox_dlq WHERE NOT reprocessed AND discarded_at IS NULL)
		FROM order_outbox`).Scan(&s.Pending, &s.Retrying, &oldest, &s.DeadLetters)
	if err != nil {
		return outbox.Stats{}, fmt.Errorf("pgstore: stats: %w", err)
	}
	if oldest.Valid {
		s.OldestPending = oldest.Time
	}
	return s, nil
}

// encodeHeaders renders headers as a JSON object ({} for none).
func encodeHeaders(h map[string]string) (string, error) {
	if len(h) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(h)
	return string(b), err
}

func nullText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// storableText makes an error message storable in a text column, which
// refuses NUL and invalid UTF-8 (a message cut mid-character, a broker's
// binary reply). Refusing it would fail Finish, and the batch would be
// published again and again.
func storableText(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// insertError converts a failed insert to the outbox's sentinels: unique
// violations to ErrDuplicate, values PostgreSQL cannot store (a NUL
// character, invalid UTF-8, a check constraint) to ErrInvalidEvent.
func insertError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%w (%w)", outbox.ErrDuplicate, err)
		case "23514", // check_violation
			"23502", // not_null_violation
			"22021", // character_not_in_repertoire
			"22P02", // invalid_text_representation
			"22P05", // untranslatable_character
			"22001": // string_data_right_truncation
			return fmt.Errorf("%w (%w)", outbox.ErrInvalidEvent, err)
		}
	}
	return fmt.Errorf("pgstore: insert: %w", err)
}

// resolveError converts a failed replay: an idempotency key taken since the
// event was dead-lettered is a duplicate.
func resolveError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w (%w)", outbox.ErrDuplicate, err)
	}
	return err
}

// rollbackAfter rolls tx back after err and returns err, joined with a
// failure to roll back. The rollback runs even when ctx has ended (a relay
// stopping), so the connection goes back to the pool clean.
func rollbackAfter(ctx context.Context, tx pgx.Tx, err error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := tx.Rollback(rctx); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
		return errors.Join(err, fmt.Errorf("pgstore: rollback: %w", rerr))
	}
	return err
}
