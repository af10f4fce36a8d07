package pgstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/outbox"
)

// bumpSQL bumps the counter of the aggregate $2, $3 and names its new value
// seq.last_sequence. The counter row stays locked until the caller's
// transaction ends, which orders one aggregate's writers and makes a
// rollback undo the bump.
const bumpSQL = `
WITH seq AS (
	INSERT INTO {{sequences}} AS s (aggregate_type, aggregate_id, last_sequence)
	VALUES ($2, $3, 1)
	ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last_sequence = s.last_sequence + 1
	RETURNING last_sequence
)`

// insertSQL bumps the aggregate's counter and inserts the event in one
// statement.
const insertSQL = bumpSQL + `
INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers, idempotency_key, sequence)
SELECT $1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb, $7, seq.last_sequence FROM seq
RETURNING sequence`

// insertNumberedSQL writes an event the caller numbered itself (its row
// lock on the aggregate orders the writers); the counter is not touched.
const insertNumberedSQL = `
INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers, idempotency_key, sequence)
VALUES ($1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)`

// deleteInTxSQL deletes the rows just inserted, in the writing transaction
// (Config.DeleteInTx): the write-ahead log keeps the inserts for pgcdc.
const deleteInTxSQL = `DELETE FROM {{outbox}} WHERE id = ANY($1::uuid[])`

// MessagePrefix begins the prefix of the logical decoding messages that
// carry events (Config.WALMessages); the outbox table's oid ends it, so
// that a change-data-capture source reads its own outbox's events only,
// whatever schema or name other outboxes of the database have.
const MessagePrefix = "herald.outbox."

// messageSQL is insertSQL for Config.WALMessages: the counter is bumped as
// usual, and the event goes to the write-ahead log as a transactional
// logical decoding message instead of a row. Naming the table with
// ::regclass fails the write when the outbox does not exist, instead of
// emitting a message with a null prefix (which PostgreSQL skips silently).
const messageSQL = bumpSQL + `
SELECT seq.last_sequence FROM seq, `

// messageNumberedSQL is insertNumberedSQL for Config.WALMessages.
const messageNumberedSQL = `SELECT 1 FROM `

// emitSQL follows messageSQL and messageNumberedSQL: it emits an event's
// message; its %[1]s is the event's sequence.
//
// The content is the event's fields as netstrings ("<byte length>:<bytes>,")
// in a fixed order, beginning with the format's version: what pgcdc reads
// without scanning the payload, where a JSON envelope had to be scanned
// whole, payload included, and cost the relay more than anything else in
// the stream (docs/BENCHMARKS.md). Payload and headers go through jsonb, as
// a row stores them; the time is the transaction's, in microseconds since
// the Unix epoch.
var emitSQL = `LATERAL (SELECT $1::uuid::text AS id, $5::jsonb::text AS payload, $6::jsonb::text AS headers,
		coalesce($7::text, '') AS idempotency_key, (%[1]s)::text AS sequence,
		(extract(epoch FROM now()) * 1000000)::bigint::text AS created_us) AS e,
	pg_logical_emit_message(true, '` + MessagePrefix + `' || '{{outbox}}'::regclass::oid,
		` + netstrings("'"+MessageVersion+"'", "e.id", "$2::text", "$3::text", "$4::text", "e.sequence", "e.created_us",
	"e.idempotency_key", "e.headers", "e.payload") + `)`

// MessageVersion is the first field of an event message's content: the
// version of its format.
const MessageVersion = "1"

// netstrings is the SQL that concatenates the netstrings of the text
// expressions exprs.
func netstrings(exprs ...string) string {
	parts := make([]string, len(exprs))
	for i, e := range exprs {
		parts[i] = "octet_length(" + e + ")::text || ':' || " + e + " || ','"
	}
	return strings.Join(parts, "\n\t\t|| ")
}

// InsertTx writes events in tx in one round trip. It sends no wake-up
// unless Config.NotifyInTx: whoever commits tx calls Notify afterwards.
// Events are expected to be validated and to carry ids (outbox.Client does
// both). An event without a Sequence takes the next one from its
// aggregate's counter row.
func (d *Driver) InsertTx(ctx context.Context, tx pgx.Tx, events []outbox.Event) ([]outbox.Enqueued, error) {
	if len(events) == 0 {
		return nil, nil
	}
	notifyInTx := d.cfg.NotifyInTx && !d.cfg.DisableNotify
	if len(events) == 1 && !notifyInTx && !d.cfg.DeleteInTx {
		// The common case: a plain statement costs less than a batch.
		e := &events[0]
		query, args, err := d.insertArgs(e, 0)
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
		query, args, err := d.insertArgs(&events[i], i)
		if err != nil {
			return nil, err
		}
		b.Queue(query, args...)
	}
	if d.cfg.DeleteInTx {
		ids := make([]uuid.UUID, len(events))
		for i := range events {
			ids[i] = events[i].ID
		}
		b.Queue(d.sql.deleteInTx, ids)
	}
	if notifyInTx {
		b.Queue(notifySQL, d.names.Channel)
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
	if d.cfg.DeleteInTx {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, Unavailable(fmt.Errorf("pgstore: delete in the writing transaction: %w", err))
		}
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
func (d *Driver) insertArgs(e *outbox.Event, i int) (string, []any, error) {
	if e.ID == uuid.Nil {
		return "", nil, fmt.Errorf("%w: event %d has no id", outbox.ErrInvalidEvent, i)
	}
	headers, err := encodeHeaders(e.Headers)
	if err != nil {
		return "", nil, fmt.Errorf("%w: event %d: headers: %w", outbox.ErrInvalidEvent, i, err)
	}
	insert, numbered := d.sql.insert, d.sql.insertNumbered
	if d.cfg.WALMessages {
		insert, numbered = d.sql.message, d.sql.messageNumbered
	}
	if e.Sequence > 0 {
		return numbered, []any{e.ID, e.AggregateType, e.AggregateID, e.Type, string(e.Payload), headers, nullText(e.IdempotencyKey), e.Sequence}, nil
	}
	return insert, []any{e.ID, e.AggregateType, e.AggregateID, e.Type, string(e.Payload), headers, nullText(e.IdempotencyKey)}, nil
}
