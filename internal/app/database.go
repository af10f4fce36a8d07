package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
	"github.com/heraldhq/herald/outbox/pgstore"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// Database is an open database with the outbox and the orders tables: the
// outbox storage for the relay and the operator tools, the orders service
// for the API, and the migrations of both.
type Database struct {
	Spec DatabaseSpec
	// Source and Admin are the outbox's storage (a pgstore or sqlitestore
	// driver): the relay's side and the operator's.
	Source outbox.Source
	Admin  outbox.Admin
	// Orders is the orders service on the same database.
	Orders order.Service
	// Audit lists the audit trail's events, for herald check.
	Audit ordersvc.Auditor
	// ordersStore is the orders' store under Orders, for a traced service.
	ordersStore ordersvc.Store
	// pg is the PostgreSQL driver, nil on SQLite.
	pg *pgstore.Driver

	sets []migrationSet
	ping func(ctx context.Context) error
	// tables reports whether the outbox's tables exist.
	tables  func(ctx context.Context) (bool, error)
	closers []func() error
}

// migrationSet is one package's embedded migrations (the outbox's, the
// orders').
type migrationSet struct {
	name string // "outbox" or "orders"
	m    migration.Migrator
}

// Migration is the state of one migration of one set.
type Migration struct {
	Set string // "outbox" or "orders"
	migration.Migration
}

// connectTimeout bounds opening the database and its first ping.
const connectTimeout = 15 * time.Second

// OpenDatabase opens the database of cfg.DatabaseURL. It does not migrate;
// call Migrate.
func OpenDatabase(ctx context.Context, cfg Config) (*Database, error) {
	cfg = cfg.withDefaults()
	spec, err := ParseDatabaseURL(cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	switch spec.Kind {
	case Postgres:
		return openPostgres(ctx, spec, cfg.Relay.Workers, writes{deleteInTx: cfg.DeleteInTx, walMessages: cfg.WALMessages})
	default:
		return openSQLite(spec)
	}
}

// ErrNoDatabase is OpenExisting's answer for a database Herald has not
// created (or migrated) yet.
var ErrNoDatabase = errors.New("no Herald database")

// OpenExisting opens the database of cfg.DatabaseURL for an operator
// command, which must not create one as a side effect: a SQLite file that
// does not exist is refused, and so, when tables is set, is a database
// without Herald's tables (herald stats in the wrong directory would
// otherwise leave an empty database behind and then fail on it).
func OpenExisting(ctx context.Context, cfg Config, tables bool) (*Database, error) {
	cfg = cfg.withDefaults()
	spec, err := ParseDatabaseURL(cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	hint := "run herald serve or herald migrate first"
	if spec.Kind == SQLite {
		file, _, _ := strings.Cut(spec.Path, "?")
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s (%s)", ErrNoDatabase, file, hint)
		}
	}
	db, err := OpenDatabase(ctx, cfg)
	if err != nil || !tables {
		return db, err
	}
	exists, err := db.hasTables(ctx)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if !exists {
		_ = db.Close()
		where := spec.Path
		if spec.Kind == Postgres {
			where = RedactURL(spec.URL)
		}
		return nil, fmt.Errorf("%w at %s: it has no outbox tables (%s)", ErrNoDatabase, where, hint)
	}
	return db, nil
}

// poolHeadroom is the connections a pool keeps for the API and the
// operator tools beyond those the relay holds.
const poolHeadroom = 8

// openPostgres opens a pool on spec. Unless the URL sets pool_max_conns,
// the pool holds enough connections for the relay's workers (each holds one
// through a batch), its wake-up listener, and the API.
// writes is how the orders service writes its events on PostgreSQL
// (Config.DeleteInTx, Config.WALMessages).
type writes struct{ deleteInTx, walMessages bool }

func openPostgres(ctx context.Context, spec DatabaseSpec, relayWorkers int, w writes) (*Database, error) {
	pcfg, err := pgxpool.ParseConfig(spec.URL)
	if err != nil {
		return nil, usagef("--db: invalid PostgreSQL connection string %s: %s", RedactURL(spec.URL), parseProblem(err, spec.URL))
	}
	// pgx errors name the user and the database, not the password; the
	// errors are redacted all the same, also of a password that came from
	// PGPASSWORD or a password file.
	password := pcfg.ConnConfig.Password
	if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "herald"
	}
	if !strings.Contains(spec.URL, "pool_max_conns") {
		pcfg.MaxConns = max(pcfg.MaxConns, int32(relayWorkers)+1+poolHeadroom)
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(cctx, pcfg)
	if err != nil {
		return nil, RedactError(fmt.Errorf("open PostgreSQL %s: %w", RedactURL(spec.URL), err), spec.URL, password)
	}
	if err := pool.Ping(cctx); err != nil {
		pool.Close()
		return nil, RedactError(fmt.Errorf("cannot connect to PostgreSQL %s: %w", RedactURL(spec.URL), err), spec.URL, password)
	}
	// The wake-up goes out after each commit, not inside the writing
	// transaction: PostgreSQL serialises the commits of notifying
	// transactions (docs/BENCHMARKS.md measures what that costs).
	store, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName, SpreadStart: true,
		DeleteInTx: w.deleteInTx, WALMessages: w.walMessages})
	if err != nil {
		pool.Close()
		return nil, err
	}
	db := &Database{
		Spec:   spec,
		pg:     store,
		Source: store,
		Admin:  store,
		ping:   pool.Ping,
		tables: func(ctx context.Context) (ok bool, err error) {
			err = pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", ordersvc.OutboxName).Scan(&ok)
			return ok, err
		},
		sets:    []migrationSet{{name: "outbox", m: store}},
		closers: []func() error{func() error { pool.Close(); return nil }},
	}
	if err := wirePostgresOrders(db, pool, store); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

func openSQLite(spec DatabaseSpec) (*Database, error) {
	file, _, _ := strings.Cut(spec.Path, "?")
	if dir := filepath.Dir(file); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create the database directory: %w", err)
		}
	}
	store, err := sqlitestore.Open(spec.Path, sqlitestore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		return nil, err
	}
	db := &Database{
		Spec:   spec,
		Source: store,
		Admin:  store,
		ping:   store.DB().PingContext,
		tables: func(ctx context.Context) (ok bool, err error) {
			err = store.DB().QueryRowContext(ctx, "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?", ordersvc.OutboxName).Scan(&ok)
			return ok, err
		},
		sets:    []migrationSet{{name: "outbox", m: store}},
		closers: []func() error{store.Close},
	}
	if err := wireSQLiteOrders(db, store); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// Migrate applies the pending migrations of every set, the outbox's first.
func (db *Database) Migrate(ctx context.Context) error {
	for _, s := range db.sets {
		if err := s.m.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate %s: %w", s.name, err)
		}
	}
	return nil
}

// MigrationStatus lists every migration of every set, the outbox's first,
// each set oldest first.
func (db *Database) MigrationStatus(ctx context.Context) ([]Migration, error) {
	var out []Migration
	for _, s := range db.sets {
		ms, err := s.m.MigrationStatus(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s migration status: %w", s.name, err)
		}
		for _, m := range ms {
			out = append(out, Migration{Set: s.name, Migration: m})
		}
	}
	return out, nil
}

// hasTables reports whether the outbox's tables exist.
func (db *Database) hasTables(ctx context.Context) (bool, error) { return db.tables(ctx) }

// Ping checks that the database answers.
func (db *Database) Ping(ctx context.Context) error { return db.ping(ctx) }

// Close closes what OpenDatabase opened, in reverse order.
func (db *Database) Close() error {
	var errs []error
	for i := len(db.closers) - 1; i >= 0; i-- {
		errs = append(errs, db.closers[i]())
	}
	db.closers = nil
	return errors.Join(errs...)
}
