package pgstore

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/outbox/migration"
)

// MigrationTable records which of the outbox's migrations are applied. It is
// the outbox's own, so that an application's migrations in the same schema
// (the orders service's, for one) keep a separate history.
const MigrationTable = "herald_outbox_migrations"

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrationSet = migration.Set{
	Owner: "pgstore", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectPostgres, Table: MigrationTable,
}

// Migration is the state of one schema migration.
type Migration = migration.Migration

// Migrations is the state of every migration, oldest first.
type Migrations = migration.List

// Migrate applies the outbox schema's pending migrations to the pool's
// current schema. Concurrent callers (several relays starting at once) take
// turns on an advisory lock keyed on the schema.
func (d *Driver) Migrate(ctx context.Context) error {
	db := stdlib.OpenDBFromPool(d.pool) // closing it leaves the pool open
	defer func() { _ = db.Close() }()
	return migrationSet.Up(ctx, db)
}

// MigrationStatus reports which migrations are applied (for herald migrate
// --status). It creates the empty version table when there is none.
func (d *Driver) MigrationStatus(ctx context.Context) (Migrations, error) {
	db := stdlib.OpenDBFromPool(d.pool)
	defer func() { _ = db.Close() }()
	return migrationSet.Status(ctx, db)
}
