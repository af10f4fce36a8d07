package pgcdc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// parkPrefix marks, with a transactional logical message, the transactions
// in which the source parks events: the stream skips their inserts.
const parkPrefix = "herald.cdc.park"

// parkSQL writes parked events into the outbox table, where the polling
// relay's rules park them too (behind an open dead letter of a lower
// sequence). An event is not written when an open dead letter of its
// aggregate has its sequence or a higher one: it is the dead letter itself,
// or one acknowledged before it, read again after a restart. An
// idempotency key that a pending event holds is left off, as a replay does.
const parkSQL = `
INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers,
	idempotency_key, sequence, created_at, attempts, last_error, first_failed_at)
SELECT r.id, r.aggregate_type, r.aggregate_id, r.event_type, r.payload::jsonb, r.headers::jsonb,
	CASE WHEN EXISTS (SELECT 1 FROM {{outbox}} o WHERE o.idempotency_key = r.idempotency_key AND o.id <> r.id)
		THEN NULL ELSE r.idempotency_key END,
	r.sequence, r.created_at, r.attempts, nullif(r.last_error, ''), r.first_failed_at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::bigint[], $9::timestamptz[], $10::int[], $11::text[], $12::timestamptz[])
	AS r(id, aggregate_type, aggregate_id, event_type, payload, headers, idempotency_key,
	sequence, created_at, attempts, last_error, first_failed_at)
WHERE NOT EXISTS (SELECT 1 FROM {{dlq}} d
	WHERE d.aggregate_type = r.aggregate_type AND d.aggregate_id = r.aggregate_id
	  AND d.sequence >= r.sequence AND NOT d.reprocessed AND d.discarded_at IS NULL)
ON CONFLICT DO NOTHING`

// heldAggregatesSQL lists the aggregates with an open dead letter.
const heldAggregatesSQL = `SELECT DISTINCT aggregate_type, aggregate_id FROM {{dlq}}
	WHERE NOT reprocessed AND discarded_at IS NULL`

// openDeadLettersSQL keeps, of the aggregates given, those with an open
// dead letter.
const openDeadLettersSQL = `SELECT h.t, h.i FROM unnest($1::text[], $2::text[]) AS h(t, i)
	WHERE EXISTS (SELECT 1 FROM {{dlq}} d WHERE d.aggregate_type = h.t AND d.aggregate_id = h.i
		AND NOT d.reprocessed AND d.discarded_at IS NULL)`

// loadRowsSQL reads the rows of the outbox table: of the aggregates given,
// or ($3) of every aggregate without an open dead letter.
const loadRowsSQL = `SELECT id, aggregate_type, aggregate_id, event_type, payload, headers,
	coalesce(idempotency_key, ''), sequence, attempts, coalesce(last_error, ''), created_at, first_failed_at
FROM {{outbox}} o
WHERE CASE WHEN $3 THEN NOT EXISTS (SELECT 1 FROM {{dlq}} d WHERE d.aggregate_type = o.aggregate_type
		AND d.aggregate_id = o.aggregate_id AND NOT d.reprocessed AND d.discarded_at IS NULL AND NOT $4)
	ELSE (aggregate_type, aggregate_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) END
ORDER BY aggregate_type, aggregate_id, sequence`

// park writes the waiting events of held aggregates (marked busy by Claim)
// into the table. A failure leaves them waiting for the next claim.
func (s *Source) park(ctx context.Context, aggs []*aggState) {
	s.parkMu.Lock()
	defer s.parkMu.Unlock()
	s.mu.Lock()
	var entries []*entry
	for _, a := range aggs {
		if !a.held {
			// Released while this claim waited for parkMu: its events
			// (the rows read back among them) flow instead.
			continue
		}
		entries = append(entries, a.queue...)
		a.queue = nil
	}
	s.mu.Unlock()
	var err error
	if len(entries) > 0 {
		err = s.writeParked(ctx, entries)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.q
	if err != nil {
		s.cfg.Logger.Error("pgcdc: parking events behind a dead letter failed; trying again", "err", err, "events", len(entries))
		for _, e := range entries {
			a := q.agg(aggKey{e.rec.AggregateType, e.rec.AggregateID})
			a.queue = append(a.queue, e)
		}
		for _, a := range aggs {
			slices.SortStableFunc(a.queue, entryOrder)
		}
	} else {
		for _, e := range entries {
			q.done(e)
		}
	}
	for _, a := range aggs {
		a.busy = false
		q.schedule(a, now)
	}
	s.signalSpace()
}

func (s *Source) writeParked(ctx context.Context, entries []*entry) error {
	var (
		ids                                         []uuid.UUID
		types, aggIDs, evTypes, payloads, hdrs, key []string
		seqs                                        []int64
		created                                     []time.Time
		attempts                                    []int32
		errs                                        []string
		failed                                      []pgtype.Timestamptz
	)
	for _, e := range entries {
		r := &e.rec
		h, err := json.Marshal(r.Headers)
		if err != nil {
			return err
		}
		if r.Headers == nil {
			h = []byte("{}")
		}
		ids = append(ids, r.ID)
		types = append(types, r.AggregateType)
		aggIDs = append(aggIDs, r.AggregateID)
		evTypes = append(evTypes, r.Type)
		payloads = append(payloads, string(r.Payload))
		hdrs = append(hdrs, string(h))
		key = append(key, r.IdempotencyKey)
		seqs = append(seqs, r.Sequence)
		created = append(created, r.CreatedAt)
		attempts = append(attempts, int32(r.Attempts)) // an integer column
		errs = append(errs, r.LastError)
		failed = append(failed, pgtype.Timestamptz{Time: r.FirstFailedAt, Valid: !r.FirstFailedAt.IsZero()})
	}
	keys := make([]pgtype.Text, len(key))
	for i, k := range key {
		keys[i] = pgtype.Text{String: k, Valid: k != ""}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue("SELECT pg_logical_emit_message(true, $1, '')", parkPrefix)
		b.Queue(s.sql.park, ids, types, aggIDs, evTypes, payloads, hdrs, keys, seqs, created, attempts, errs, failed)
		return tx.SendBatch(ctx, b).Close()
	})
}

// checkReleases runs until ctx ends: every CheckInterval it reads back the
// parked events of the aggregates whose dead letters were all replayed or
// discarded.
func (s *Source) checkReleases(ctx context.Context) {
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.release(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("pgcdc: checking parked aggregates failed", "err", err)
		}
	}
}

// release reads back the rows of the held aggregates that no open dead
// letter holds any more, in sequence order, ahead of the events the stream
// has read of them since.
func (s *Source) release(ctx context.Context) error {
	s.parkMu.Lock()
	defer s.parkMu.Unlock()
	s.mu.Lock()
	var types, ids []string
	for k, a := range s.q.aggs {
		if a.held && !a.busy {
			types, ids = append(types, k.typ), append(ids, k.id)
		}
	}
	confirmed := s.q.confirmable()
	for id, until := range s.q.loaded {
		if until <= confirmed {
			delete(s.q.loaded, id)
		}
	}
	s.mu.Unlock()
	if len(types) == 0 {
		return nil
	}
	still := make(map[aggKey]bool)
	if !s.cfg.MoveOnPastDeadLetters {
		rows, _ := s.pool.Query(ctx, s.sql.openDeadLetters, types, ids)
		var k aggKey
		if _, err := pgx.ForEachRow(rows, []any{&k.typ, &k.id}, func() error { still[k] = true; return nil }); err != nil {
			return err
		}
	}
	types, ids = types[:0], ids[:0]
	s.mu.Lock()
	for k, a := range s.q.aggs {
		if a.held && !a.busy && !still[k] {
			types, ids = append(types, k.typ), append(ids, k.id)
		}
	}
	s.mu.Unlock()
	if len(types) == 0 {
		return nil
	}
	n, err := s.load(ctx, types, ids, false)
	if err != nil {
		return err
	}
	s.cfg.Logger.Info("pgcdc: dead letters resolved; parked events flow again", "aggregates", len(types), "events", n)
	return nil
}

// load reads rows of the outbox table into memory, ahead of the events the
// stream read of their aggregates, and ends the hold on those aggregates.
// With all, it reads the rows of every aggregate without an open dead
// letter (at the first start, for rows the stream will not send); the
// others are held. The caller holds parkMu.
func (s *Source) load(ctx context.Context, types, ids []string, all bool) (int, error) {
	var until lsn
	if err := s.pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()").Scan(&until); err != nil {
		return 0, fmt.Errorf("pgcdc: read back parked events: %w", err)
	}
	var held []aggKey
	if all && !s.cfg.MoveOnPastDeadLetters {
		rows, _ := s.pool.Query(ctx, s.sql.heldAggregates)
		var k aggKey
		if _, err := pgx.ForEachRow(rows, []any{&k.typ, &k.id}, func() error { held = append(held, k); return nil }); err != nil {
			return 0, fmt.Errorf("pgcdc: read the open dead letters: %w", err)
		}
	}
	rows, _ := s.pool.Query(ctx, s.sql.loadRows, types, ids, all, s.cfg.MoveOnPastDeadLetters)
	loaded, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*entry, error) {
		e := &entry{kept: true}
		r := &e.rec
		var (
			payload []byte
			first   pgtype.Timestamptz
		)
		if err := row.Scan(&r.ID, &r.AggregateType, &r.AggregateID, &r.Type, &payload, &r.Headers,
			&r.IdempotencyKey, &r.Sequence, &r.Attempts, &r.LastError, &r.CreatedAt, &first); err != nil {
			return nil, err
		}
		r.Payload = payload
		if first.Valid {
			r.FirstFailedAt = first.Time
		}
		return e, nil
	})
	if err != nil {
		return 0, fmt.Errorf("pgcdc: read back parked events: %w", err)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.q
	for _, k := range held {
		q.agg(k).held = true
	}
	byAgg := make(map[aggKey][]*entry)
	for _, e := range loaded {
		k := aggKey{e.rec.AggregateType, e.rec.AggregateID}
		byAgg[k] = append(byAgg[k], e)
	}
	for i := range types {
		k := aggKey{types[i], ids[i]}
		if _, ok := byAgg[k]; !ok {
			byAgg[k] = nil
		}
	}
	n := 0
	for k, es := range byAgg {
		a := q.agg(k)
		if a.held && all {
			continue
		}
		a.held = false
		known := make(idSet, len(a.queue))
		for _, e := range a.queue {
			known[e.rec.ID] = struct{}{}
		}
		for _, e := range es {
			q.loaded[e.rec.ID] = until
			if _, ok := known[e.rec.ID]; ok {
				continue
			}
			e.gen = q.gen
			a.queue = append(a.queue, e)
			q.buffered++
			n++
		}
		slices.SortStableFunc(a.queue, entryOrder)
		q.schedule(a, now)
	}
	if n > 0 && s.wake != nil {
		s.wake()
	}
	return n, nil
}
