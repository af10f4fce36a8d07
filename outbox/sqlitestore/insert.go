package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/outbox"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Templates of the enqueue's queries (see renderQueries).
const (
	// bumpSequenceSQL reserves n sequences of an aggregate and returns the
	// last of them. It writes in the caller's transaction, so a rollback
	// gives the numbers back: no gaps among committed events.
	bumpSequenceSQL = `INSERT INTO {{sequences}} (aggregate_type, aggregate_id, last_sequence)
VALUES (?1, ?2, ?3)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last_sequence = last_sequence + excluded.last_sequence
RETURNING last_sequence`

	// insertEventSQL writes an event. Its sequence is above every other of
	// its aggregate, so it is the head exactly when the aggregate has no
	// pending event.
	insertEventSQL = `INSERT INTO {{outbox}}
(id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, next_attempt_at, created_at, idempotency_key, head)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9,
        NOT EXISTS (SELECT 1 FROM {{outbox}} WHERE aggregate_type = ?2 AND aggregate_id = ?3))`
)

type aggregateKey struct{ typ, id string }

// InsertTx writes events in tx, giving each event without a Sequence the
// next one of its aggregate, and wakes this Driver's listeners. tx must be begun on DB()
// with BEGIN IMMEDIATE (the default of Open's handle). It returns an error
// wrapping outbox.ErrDuplicate when an event id or idempotency key is
// already in the outbox; tx must then be rolled back.
func (d *Driver) InsertTx(ctx context.Context, tx *sql.Tx, events []outbox.Event) ([]outbox.Enqueued, error) {
	if len(events) == 0 {
		return nil, nil
	}
	// Reserve the sequences of each aggregate with one statement, in the
	// order the aggregates first appear.
	counts := make(map[aggregateKey]int64, len(events))
	order := make([]aggregateKey, 0, len(events))
	for i := range events {
		if events[i].Sequence > 0 {
			continue // numbered by the caller: the counter stays untouched
		}
		k := aggregateKey{events[i].AggregateType, events[i].AggregateID}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
	}
	next := make(map[aggregateKey]int64, len(order))
	for _, k := range order {
		var last int64
		if err := d.txQueryRow(ctx, tx, d.q.bumpSequence, k.typ, k.id, counts[k]).Scan(&last); err != nil {
			return nil, fmt.Errorf("sqlitestore: reserve sequence of %s %s: %w", k.typ, k.id, err)
		}
		next[k] = last - counts[k] + 1
	}

	now := micros(d.now())
	out := make([]outbox.Enqueued, len(events))
	for i := range events {
		e := &events[i]
		k := aggregateKey{e.AggregateType, e.AggregateID}
		seq := e.Sequence
		if seq == 0 {
			seq = next[k]
			next[k]++
		}
		headers, err := encodeHeaders(e.Headers)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: event %d: %w", i, err)
		}
		var key sql.NullString
		if e.IdempotencyKey != "" {
			key = sql.NullString{String: e.IdempotencyKey, Valid: true}
		}
		if _, err := d.txExec(ctx, tx, d.q.insertEvent, e.ID.String(), e.AggregateType, e.AggregateID,
			e.Type, string(e.Payload), headers, seq, now, key); err != nil {
			if isUnique(err) {
				return nil, fmt.Errorf("%w: event %d (id %s): %w", outbox.ErrDuplicate, i, e.ID, err)
			}
			return nil, fmt.Errorf("sqlitestore: insert event %d: %w", i, err)
		}
		out[i] = outbox.Enqueued{ID: e.ID, Sequence: seq}
	}
	d.wakes.signal()
	return out, nil
}

// isUnique reports whether err is SQLite's unique or primary key violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

func encodeHeaders(h map[string]string) (string, error) {
	if len(h) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encode headers: %w", err)
	}
	return string(b), nil
}

func decodeHeaders(s string) (map[string]string, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(s), &h); err != nil {
		return nil, fmt.Errorf("decode headers: %w", err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	return h, nil
}
