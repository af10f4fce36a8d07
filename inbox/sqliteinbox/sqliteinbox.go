// Package sqliteinbox is the SQLite driver of the inbox: an
// inbox.Driver[*sql.Tx] on modernc.org/sqlite, through database/sql.
//
//	d, err := sqliteinbox.Open("consumer.db", sqliteinbox.Config{Name: "shipping"})
//	if err != nil { ... }
//	defer d.Close()
//	if err := d.Migrate(ctx); err != nil { ... }
//	in := inbox.New[*sql.Tx](d, handle, inbox.Config{})
//
// The inbox called NAME keeps the ids it has seen in NAME_seen, the last
// sequence applied per aggregate in NAME_aggregates and the events waiting
// for a predecessor in NAME_held (inbox.NamesOf). SQLite has one writer at a
// time, so the consumer's transactions, and with them the events they
// admit, take turns; the handle must begin its read-write transactions with
// BEGIN IMMEDIATE (sqlitestore.DSN sets _txlock=immediate), or two
// consumers racing to upgrade their read locks fail with SQLITE_BUSY. A
// consumer with an outbox in the same file gives New the outbox driver's
// handle (sqlitestore.Driver.DB), whose writers queue in the process.
package sqliteinbox

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/outbox/migration"
	"github.com/heraldhq/herald/outbox/sqlitestore"
	"github.com/heraldhq/herald/outbox/sqlitestore/sqlitestmt"
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

// Driver is the SQLite inbox driver. It is safe for concurrent use.
type Driver struct {
	db         *sql.DB
	store      *sqlitestore.Driver // an outbox driver on db, for its WithTx
	ownsDB     bool
	now        func() time.Time
	names      inbox.Names
	migrations migration.Set
	q          queries
	stmts      *sqlitestmt.Cache // the queries of every admission, prepared
}

var _ inbox.Driver[*sql.Tx] = (*Driver)(nil)

type queries struct {
	seen, last, insertAgg, advance, successor, hold, take, lock, gaps, prune string
}

// Open opens (creating if need be) the SQLite database file at path as
// sqlitestore.Open does: the settings of sqlitestore.DSN, a pool sized by
// sqlitestore.ConfigurePool, and read-write transactions queued in the
// process first come first served, so that busy consumers do not starve
// each other in SQLite's busy handler. Close closes it. Open does not
// migrate; call Migrate.
func Open(path string, cfg Config) (*Driver, error) {
	store, err := sqlitestore.Open(path, sqlitestore.Config{})
	if err != nil {
		return nil, fmt.Errorf("sqliteinbox: %w", err)
	}
	d, err := newDriver(store, cfg)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	d.ownsDB = true
	return d, nil
}

// New returns a driver on a handle the caller opened with
// sqlitestore.DriverName and the settings of sqlitestore.DSN. Close leaves
// the handle open. It fails only on a name inbox.NamesOf refuses.
func New(db *sql.DB, cfg Config) (*Driver, error) {
	store, err := sqlitestore.New(db, sqlitestore.Config{})
	if err != nil {
		return nil, fmt.Errorf("sqliteinbox: %w", err)
	}
	return newDriver(store, cfg)
}

func newDriver(store *sqlitestore.Driver, cfg Config) (*Driver, error) {
	db := store.DB()
	names, err := inbox.NamesOf(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("sqliteinbox: %w", err)
	}
	r := names.Replacer()
	d := &Driver{
		db:    db,
		store: store,
		now:   time.Now,
		names: names,
		migrations: migration.Set{
			Owner: "sqliteinbox", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectSQLite3,
			Table: names.Migrations, Names: r,
		},
		q: queries{
			seen: r.Replace(`INSERT INTO {{seen}} (event_id, received_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING`),
			last: r.Replace(`SELECT last_sequence FROM {{aggregates}} WHERE aggregate_type = ?1 AND aggregate_id = ?2`),
			insertAgg: r.Replace(`INSERT INTO {{aggregates}} (aggregate_type, aggregate_id, last_sequence) VALUES (?1, ?2, ?3)
				ON CONFLICT DO UPDATE SET last_sequence = excluded.last_sequence`),
			advance: r.Replace(`UPDATE {{aggregates}} SET last_sequence = ?3 WHERE aggregate_type = ?1 AND aggregate_id = ?2`),
			successor: r.Replace(`SELECT EXISTS (SELECT 1 FROM {{held}}
				WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND sequence = ?3)`),
			hold: r.Replace(`INSERT INTO {{held}} (aggregate_type, aggregate_id, sequence, event_id, event, held_at)
				VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING`),
			take: r.Replace(`DELETE FROM {{held}} WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND sequence = ?3
				RETURNING event`),
			lock: r.Replace(`SELECT a.last_sequence, coalesce((SELECT min(h.sequence) FROM {{held}} AS h
					WHERE h.aggregate_type = a.aggregate_type AND h.aggregate_id = a.aggregate_id), 0)
				FROM {{aggregates}} AS a WHERE a.aggregate_type = ?1 AND a.aggregate_id = ?2`),
			gaps: r.Replace(`SELECT h.aggregate_type, h.aggregate_id, a.last_sequence, min(h.sequence), count(*), min(h.held_at)
				FROM {{held}} AS h JOIN {{aggregates}} AS a USING (aggregate_type, aggregate_id)
				GROUP BY h.aggregate_type, h.aggregate_id, a.last_sequence
				HAVING min(h.held_at) <= ?1
				ORDER BY min(h.held_at), h.aggregate_type, h.aggregate_id`),
			prune: r.Replace(`DELETE FROM {{seen}} WHERE rowid IN (
				SELECT rowid FROM {{seen}} WHERE received_at < ?1 LIMIT ?2)`),
		},
	}
	d.stmts = sqlitestmt.New(db, d.q.seen, d.q.last, d.q.insertAgg, d.q.advance, d.q.successor)
	_ = d.stmts.Prepare(context.Background()) // fails harmlessly before Migrate
	return d, nil
}

// DB returns the database handle.
func (d *Driver) DB() *sql.DB { return d.db }

// Names returns the database objects of the driver's inbox.
func (d *Driver) Names() inbox.Names { return d.names }

// Close closes the driver's prepared statements and, if Open opened the
// database, the database.
func (d *Driver) Close() error {
	err := d.stmts.Close()
	if d.ownsDB {
		err = errors.Join(err, d.store.Close())
	}
	return err
}

// Migrate applies the inbox schema's pending migrations, each in a
// transaction.
func (d *Driver) Migrate(ctx context.Context) error {
	if err := d.migrations.Up(ctx, d.db); err != nil {
		return err
	}
	if err := d.stmts.Prepare(ctx); err != nil {
		return fmt.Errorf("sqliteinbox: prepare statements: %w", err)
	}
	return nil
}

// MigrationStatus reports which migrations are applied.
func (d *Driver) MigrationStatus(ctx context.Context) (migration.List, error) {
	return d.migrations.Status(ctx, d.db)
}

// Admit implements inbox.Driver. The transaction holds SQLite's write lock
// from its BEGIN IMMEDIATE on, which serialises it with every other admission.
func (d *Driver) Admit(ctx context.Context, tx *sql.Tx, ev *inbox.Event) (inbox.Admission, error) {
	q := d.stmts.Tx(tx)
	res, err := q.ExecContext(ctx, d.q.seen, ev.ID, d.now().UnixMicro())
	if err != nil {
		return inbox.Admission{}, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return inbox.Admission{Verdict: inbox.VerdictDuplicate}, err
	}
	a := inbox.Admission{}
	err = q.QueryRowContext(ctx, d.q.last, ev.AggregateType, ev.Subject).Scan(&a.Last)
	known := err == nil
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	if err != nil {
		return inbox.Admission{}, err
	}
	switch {
	case ev.Sequence <= a.Last:
		a.Verdict = inbox.VerdictStale
		return a, nil
	case ev.Sequence > a.Last+1:
		a.Verdict = inbox.VerdictEarly
		if !known { // Hold and Advance need the row
			_, err = q.ExecContext(ctx, d.q.insertAgg, ev.AggregateType, ev.Subject, 0)
		}
		return a, err
	}
	a.Verdict = inbox.VerdictNext
	if known {
		_, err = q.ExecContext(ctx, d.q.advance, ev.AggregateType, ev.Subject, ev.Sequence)
	} else {
		_, err = q.ExecContext(ctx, d.q.insertAgg, ev.AggregateType, ev.Subject, ev.Sequence)
	}
	if err == nil && known { // a new aggregate has nothing held
		err = q.QueryRowContext(ctx, d.q.successor, ev.AggregateType, ev.Subject, ev.Sequence+1).Scan(&a.Successor)
	}
	return a, err
}

// Hold implements inbox.Driver.
func (d *Driver) Hold(ctx context.Context, tx *sql.Tx, ev *inbox.Event, body []byte) (bool, error) {
	res, err := tx.ExecContext(ctx, d.q.hold, ev.AggregateType, ev.Subject, ev.Sequence, ev.ID, body, d.now().UnixMicro())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// TakeHeld implements inbox.Driver.
func (d *Driver) TakeHeld(ctx context.Context, tx *sql.Tx, aggregateType, aggregateID string, seq int64) ([]byte, bool, error) {
	var body []byte
	err := tx.QueryRowContext(ctx, d.q.take, aggregateType, aggregateID, seq).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return body, err == nil, err
}

// Advance implements inbox.Driver.
func (d *Driver) Advance(ctx context.Context, tx *sql.Tx, aggregateType, aggregateID string, last int64) error {
	_, err := tx.ExecContext(ctx, d.q.advance, aggregateType, aggregateID, last)
	return err
}

// LockAggregate implements inbox.Driver: the transaction's write lock is
// the lock.
func (d *Driver) LockAggregate(ctx context.Context, tx *sql.Tx, aggregateType, aggregateID string) (last, firstHeld int64, err error) {
	err = tx.QueryRowContext(ctx, d.q.lock, aggregateType, aggregateID).Scan(&last, &firstHeld)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, inbox.ErrUnknownAggregate
	}
	return last, firstHeld, err
}

// WithTx runs fn in a new transaction and commits it when fn returns nil,
// as sqlitestore.Driver.WithTx does: when fn fails, panics or ends its
// goroutine, it rolls back and returns fn's error unchanged, or lets the
// panic go on.
func (d *Driver) WithTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return d.store.WithTx(ctx, fn)
}

// Gaps implements inbox.Admin.
func (d *Driver) Gaps(ctx context.Context, olderThan time.Duration) ([]inbox.Gap, error) {
	rows, err := d.db.QueryContext(ctx, d.q.gaps, d.now().Add(-olderThan).UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqliteinbox: gaps: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var gaps []inbox.Gap
	for rows.Next() {
		var (
			g     inbox.Gap
			since int64
		)
		if err := rows.Scan(&g.AggregateType, &g.AggregateID, &g.LastApplied, &g.FirstHeld, &g.Held, &since); err != nil {
			return nil, fmt.Errorf("sqliteinbox: gaps: %w", err)
		}
		g.Since = time.UnixMicro(since).UTC()
		gaps = append(gaps, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteinbox: gaps: %w", err)
	}
	return gaps, nil
}

// Prune implements inbox.Admin: each batch is a transaction of its own, so
// writers wait for one batch at most.
func (d *Driver) Prune(ctx context.Context, p inbox.PruneParams) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	cutoff := d.now().Add(-p.OlderThan).UnixMicro()
	n, err := inbox.PruneBatches(ctx, p.BatchSize, func(ctx context.Context, limit int) (int, error) {
		var n int64
		err := d.WithTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, d.q.prune, cutoff, limit)
			if err == nil {
				n, err = res.RowsAffected()
			}
			return err
		})
		return int(n), err
	})
	if err != nil {
		return n, fmt.Errorf("sqliteinbox: prune: %w", err)
	}
	return n, nil
}
