// Package pginbox is the PostgreSQL driver of the inbox: an
// inbox.Driver[pgx.Tx] on a pgxpool.Pool.
//
//	d, err := pginbox.New(pool, pginbox.Config{Name: "shipping"})
//	if err != nil { ... }
//	if err := d.Migrate(ctx); err != nil { ... }
//	in := inbox.New[pgx.Tx](d, handle, inbox.Config{})
//
// The inbox called NAME keeps the ids it has seen in NAME_seen, the last
// sequence applied per aggregate in NAME_aggregates and the events waiting
// for a predecessor in NAME_held (inbox.NamesOf). Admitting an event is one
// round trip: the function NAME_admit, which the migration creates, records
// the id, locks the aggregate's row and, for the aggregate's next event,
// advances its sequence, all in the consumer's transaction.
package pginbox

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/outbox/migration"
)

// The migrations are templates of one inbox: see inbox.Names.Replacer.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures a Driver. The zero value is usable.
type Config struct {
	// Name names the inbox and, through inbox.NamesOf, its tables; default
	// inbox.DefaultName.
	Name string
}

// Driver is the PostgreSQL inbox driver. It is safe for concurrent use.
type Driver struct {
	pool       *pgxpool.Pool
	names      inbox.Names
	migrations migration.Set
	q          queries
}

var _ inbox.BatchDriver[pgx.Tx] = (*Driver)(nil)

type queries struct {
	admit, hold, take, advance, lock, gaps, prune string
	// A batch's (BatchDriver).
	seenBatch, createBatch, lockBatch, heldBatch, advanceBatch, holdBatch, takeBatch string
}

// New returns a driver of the inbox cfg.Name on pool. Call Migrate before
// first use. It fails only on a name inbox.NamesOf refuses.
func New(pool *pgxpool.Pool, cfg Config) (*Driver, error) {
	names, err := inbox.NamesOf(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("pginbox: %w", err)
	}
	r := names.Replacer()
	return &Driver{
		pool:  pool,
		names: names,
		migrations: migration.Set{
			Owner: "pginbox", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectPostgres,
			Table: names.Migrations, Names: r,
		},
		q: queries{
			admit: r.Replace(`SELECT verdict, last_applied, successor FROM {{admit}}($1, $2, $3, $4)`),
			hold: r.Replace(`INSERT INTO {{held}} (aggregate_type, aggregate_id, sequence, event_id, event)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`),
			take: r.Replace(`DELETE FROM {{held}} WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3
				RETURNING event`),
			advance: r.Replace(`UPDATE {{aggregates}} SET last_sequence = $3
				WHERE aggregate_type = $1 AND aggregate_id = $2`),
			lock: r.Replace(`SELECT a.last_sequence, coalesce((SELECT min(h.sequence) FROM {{held}} AS h
					WHERE h.aggregate_type = a.aggregate_type AND h.aggregate_id = a.aggregate_id), 0)
				FROM {{aggregates}} AS a WHERE a.aggregate_type = $1 AND a.aggregate_id = $2 FOR UPDATE OF a`),
			gaps: r.Replace(`SELECT h.aggregate_type, h.aggregate_id, a.last_sequence, min(h.sequence), count(*), min(h.held_at)
				FROM {{held}} AS h JOIN {{aggregates}} AS a USING (aggregate_type, aggregate_id)
				GROUP BY h.aggregate_type, h.aggregate_id, a.last_sequence
				HAVING min(h.held_at) <= now() - make_interval(secs => $1)
				ORDER BY min(h.held_at), h.aggregate_type, h.aggregate_id`),
			prune: r.Replace(`DELETE FROM {{seen}} WHERE event_id IN (
				SELECT event_id FROM {{seen}} WHERE received_at < now() - make_interval(secs => $1) LIMIT $2)`),

			// The ids first, sorted, so that two batches wait for each other's
			// ids in the same order.
			seenBatch: r.Replace(`INSERT INTO {{seen}} (event_id) SELECT id FROM unnest($1::text[]) AS id ORDER BY id COLLATE "C"
				ON CONFLICT DO NOTHING RETURNING event_id`),
			// Then the aggregates: created if need be, then locked, sorted.
			createBatch: r.Replace(`INSERT INTO {{aggregates}} (aggregate_type, aggregate_id, last_sequence)
				SELECT t, i, 0 FROM unnest($1::text[], $2::text[]) AS u (t, i) ORDER BY t COLLATE "C", i COLLATE "C"
				ON CONFLICT DO NOTHING`),
			// The lock, and the advance of the aggregates at their guess: the
			// UPDATE finds the rows the CTE locked (re-reading a row a
			// committed transaction changed meanwhile) and, as they are
			// locked, advances every one whose locked position is its guess's
			// (a data-modifying CTE runs to completion unread).
			lockBatch: r.Replace(`WITH locked AS (
					SELECT a.aggregate_type, a.aggregate_id, a.last_sequence, u.expect, u.upto
					FROM {{aggregates}} AS a
					JOIN unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u (t, i, expect, upto)
						ON a.aggregate_type = u.t AND a.aggregate_id = u.i
					ORDER BY a.aggregate_type, a.aggregate_id FOR UPDATE OF a),
				advanced AS (
					UPDATE {{aggregates}} AS a SET last_sequence = l.upto FROM locked AS l
					WHERE a.aggregate_type = l.aggregate_type AND a.aggregate_id = l.aggregate_id
						AND l.last_sequence = l.expect)
				SELECT aggregate_type, aggregate_id, last_sequence, last_sequence = expect FROM locked`),
			// A statement of its own, after the locks: it sees what the
			// transactions it waited for held and released.
			heldBatch: r.Replace(`SELECT h.aggregate_type, h.aggregate_id, h.sequence
				FROM {{held}} AS h JOIN unnest($1::text[], $2::text[]) AS u (t, i)
					ON h.aggregate_type = u.t AND h.aggregate_id = u.i`),
			advanceBatch: r.Replace(`UPDATE {{aggregates}} AS a SET last_sequence = u.last
				FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u (t, i, last)
				WHERE a.aggregate_type = u.t AND a.aggregate_id = u.i`),
			holdBatch: r.Replace(`INSERT INTO {{held}} (aggregate_type, aggregate_id, sequence, event_id, event)
				SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bytea[])`),
			takeBatch: r.Replace(`DELETE FROM {{held}} AS h
				USING unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u (t, i, s, n)
				WHERE h.aggregate_type = u.t AND h.aggregate_id = u.i AND h.sequence = u.s
				RETURNING u.n, h.event`),
		},
	}, nil
}

// Names returns the database objects of the driver's inbox.
func (d *Driver) Names() inbox.Names { return d.names }

// Pool returns the pool the driver runs on.
func (d *Driver) Pool() *pgxpool.Pool { return d.pool }

// Migrate applies the inbox schema's pending migrations to the pool's
// current schema; concurrent callers take turns.
func (d *Driver) Migrate(ctx context.Context) error {
	db := stdlib.OpenDBFromPool(d.pool) // closing it leaves the pool open
	defer func() { _ = db.Close() }()
	return d.migrations.Up(ctx, db)
}

// MigrationStatus reports which migrations are applied.
func (d *Driver) MigrationStatus(ctx context.Context) (migration.List, error) {
	db := stdlib.OpenDBFromPool(d.pool)
	defer func() { _ = db.Close() }()
	return d.migrations.Status(ctx, db)
}

// Admit implements inbox.Driver.
func (d *Driver) Admit(ctx context.Context, tx pgx.Tx, ev *inbox.Event) (inbox.Admission, error) {
	var (
		a       inbox.Admission
		verdict int16
	)
	err := tx.QueryRow(ctx, d.q.admit, ev.ID, ev.AggregateType, ev.Subject, ev.Sequence).Scan(&verdict, &a.Last, &a.Successor)
	a.Verdict = inbox.Verdict(verdict)
	return a, err
}

// Hold implements inbox.Driver.
func (d *Driver) Hold(ctx context.Context, tx pgx.Tx, ev *inbox.Event, body []byte) (bool, error) {
	tag, err := tx.Exec(ctx, d.q.hold, ev.AggregateType, ev.Subject, ev.Sequence, ev.ID, body)
	return tag.RowsAffected() == 1, err
}

// TakeHeld implements inbox.Driver.
func (d *Driver) TakeHeld(ctx context.Context, tx pgx.Tx, aggregateType, aggregateID string, seq int64) ([]byte, bool, error) {
	var body []byte
	err := tx.QueryRow(ctx, d.q.take, aggregateType, aggregateID, seq).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return body, err == nil, err
}

// Advance implements inbox.Driver.
func (d *Driver) Advance(ctx context.Context, tx pgx.Tx, aggregateType, aggregateID string, last int64) error {
	_, err := tx.Exec(ctx, d.q.advance, aggregateType, aggregateID, last)
	return err
}

// LockAggregate implements inbox.Driver.
func (d *Driver) LockAggregate(ctx context.Context, tx pgx.Tx, aggregateType, aggregateID string) (last, firstHeld int64, err error) {
	err = tx.QueryRow(ctx, d.q.lock, aggregateType, aggregateID).Scan(&last, &firstHeld)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, inbox.ErrUnknownAggregate
	}
	return last, firstHeld, err
}

// AdmitBatch implements inbox.BatchDriver in one round trip: four
// statements sent at once. It advances the aggregates at their guess.
func (d *Driver) AdmitBatch(ctx context.Context, tx pgx.Tx, ids []string, aggregates []inbox.BatchAggregate) (inbox.BatchAdmission, error) {
	n := len(aggregates)
	types, aggIDs, expect, upto := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n)
	for j, a := range aggregates {
		types[j], aggIDs[j], expect[j], upto[j] = a.Type, a.ID, a.Expect, a.Upto
	}
	b := &pgx.Batch{}
	b.Queue(d.q.seenBatch, ids)
	b.Queue(d.q.createBatch, types, aggIDs)
	b.Queue(d.q.lockBatch, types, aggIDs, expect, upto)
	b.Queue(d.q.heldBatch, types, aggIDs)
	br := tx.SendBatch(ctx, b)
	adm, err := readAdmission(br, ids, aggregates)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return adm, err
}

func readAdmission(br pgx.BatchResults, ids []string, aggregates []inbox.BatchAggregate) (inbox.BatchAdmission, error) {
	adm := inbox.BatchAdmission{Seen: make([]bool, len(ids)), Aggregates: make([]inbox.AggregateState, len(aggregates))}
	fresh := make(map[string]bool, len(ids))
	var id string
	if _, err := forEach(br, []any{&id}, func() error { fresh[id] = true; return nil }); err != nil {
		return adm, fmt.Errorf("record the ids: %w", err)
	}
	for i, id := range ids {
		adm.Seen[i] = !fresh[id]
	}
	if _, err := br.Exec(); err != nil {
		return adm, fmt.Errorf("create the aggregates: %w", err)
	}
	at := make(map[inbox.AggregateKey]int, len(aggregates))
	for j, a := range aggregates {
		at[a.AggregateKey] = j
	}
	var (
		k        inbox.AggregateKey
		last     int64
		advanced bool
	)
	locked := 0
	if _, err := forEach(br, []any{&k.Type, &k.ID, &last, &advanced}, func() error {
		if j, ok := at[k]; ok {
			adm.Aggregates[j].Last, adm.Aggregates[j].Advanced = last, advanced
			locked++
		}
		return nil
	}); err != nil {
		return adm, fmt.Errorf("lock the aggregates: %w", err)
	}
	if locked != len(aggregates) {
		return adm, fmt.Errorf("lock the aggregates: %d rows for %d aggregates", locked, len(aggregates))
	}
	var seq int64
	if _, err := forEach(br, []any{&k.Type, &k.ID, &seq}, func() error {
		if j, ok := at[k]; ok {
			adm.Aggregates[j].Held = append(adm.Aggregates[j].Held, seq)
		}
		return nil
	}); err != nil {
		return adm, fmt.Errorf("read the held events: %w", err)
	}
	return adm, nil
}

// SettleBatch implements inbox.BatchDriver in one round trip: up to three
// statements sent at once, only those with something to write.
func (d *Driver) SettleBatch(ctx context.Context, tx pgx.Tx, s inbox.Settlement) ([][]byte, error) {
	b := &pgx.Batch{}
	if len(s.Advance) > 0 {
		types, ids, lasts := positions(s.Advance)
		b.Queue(d.q.advanceBatch, types, ids, lasts)
	}
	if len(s.Hold) > 0 {
		n := len(s.Hold)
		types, ids, seqs, evIDs, bodies := make([]string, n), make([]string, n), make([]int64, n), make([]string, n), make([][]byte, n)
		for i, h := range s.Hold {
			types[i], ids[i], seqs[i], evIDs[i], bodies[i] = h.Event.AggregateType, h.Event.Subject, h.Event.Sequence, h.Event.ID, h.Body
		}
		b.Queue(d.q.holdBatch, types, ids, seqs, evIDs, bodies)
	}
	if len(s.Take) > 0 {
		types, ids, seqs := positions(s.Take)
		b.Queue(d.q.takeBatch, types, ids, seqs)
	}
	if b.Len() == 0 {
		return nil, nil
	}
	br := tx.SendBatch(ctx, b)
	taken, err := readSettlement(br, s)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return taken, err
}

func readSettlement(br pgx.BatchResults, s inbox.Settlement) ([][]byte, error) {
	if len(s.Advance) > 0 {
		tag, err := br.Exec()
		if err != nil {
			return nil, fmt.Errorf("advance the aggregates: %w", err)
		}
		if tag.RowsAffected() != int64(len(s.Advance)) {
			return nil, fmt.Errorf("advance the aggregates: %d rows for %d aggregates", tag.RowsAffected(), len(s.Advance))
		}
	}
	if len(s.Hold) > 0 {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("hold: %w", err)
		}
	}
	if len(s.Take) == 0 {
		return nil, nil
	}
	taken := make([][]byte, len(s.Take))
	var (
		n    int64
		body []byte
	)
	got := 0
	if _, err := forEach(br, []any{&n, &body}, func() error {
		if n >= 1 && n <= int64(len(taken)) {
			taken[n-1] = body
			got++
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("release the held events: %w", err)
	}
	if got != len(taken) {
		return nil, fmt.Errorf("release the held events: %d rows for %d events", got, len(taken))
	}
	return taken, nil
}

// forEach reads the rows of the batch's next query.
func forEach(br pgx.BatchResults, scans []any, fn func() error) (pgconn.CommandTag, error) {
	rows, err := br.Query()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return pgx.ForEachRow(rows, scans, fn)
}

func positions(ps []inbox.Position) (types, ids []string, seqs []int64) {
	types, ids, seqs = make([]string, len(ps)), make([]string, len(ps)), make([]int64, len(ps))
	for i, p := range ps {
		types[i], ids[i], seqs[i] = p.Aggregate.Type, p.Aggregate.ID, p.Sequence
	}
	return types, ids, seqs
}

// WithTx runs fn in a new transaction on the pool (pgx.BeginFunc): it
// commits when fn returns nil and rolls back when fn fails or panics; a
// connection whose rollback fails (ctx cancelled) is closed, never returned
// to the pool in a transaction.
func (d *Driver) WithTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, d.pool, fn)
}

// Gaps implements inbox.Admin.
func (d *Driver) Gaps(ctx context.Context, olderThan time.Duration) ([]inbox.Gap, error) {
	rows, err := d.pool.Query(ctx, d.q.gaps, olderThan.Seconds())
	if err != nil {
		return nil, fmt.Errorf("pginbox: gaps: %w", err)
	}
	gaps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (inbox.Gap, error) {
		var g inbox.Gap
		err := row.Scan(&g.AggregateType, &g.AggregateID, &g.LastApplied, &g.FirstHeld, &g.Held, &g.Since)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("pginbox: gaps: %w", err)
	}
	return gaps, nil
}

// Prune implements inbox.Admin: each batch is a statement of its own.
func (d *Driver) Prune(ctx context.Context, p inbox.PruneParams) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	n, err := inbox.PruneBatches(ctx, p.BatchSize, func(ctx context.Context, limit int) (int, error) {
		tag, err := d.pool.Exec(ctx, d.q.prune, p.OlderThan.Seconds(), limit)
		return int(tag.RowsAffected()), err
	})
	if err != nil {
		return n, fmt.Errorf("pginbox: prune: %w", err)
	}
	return n, nil
}
