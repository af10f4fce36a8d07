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

var _ inbox.Driver[pgx.Tx] = (*Driver)(nil)

type queries struct {
	admit, hold, take, advance, lock, gaps, prune string
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
