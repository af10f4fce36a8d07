package sqlitestore

import (
	"context"
	"embed"
	"fmt"

	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/outbox/migration"
)

// MigrationTable is the table in which the driver's migrations record their
// versions. It is the driver's own, so that an application can keep its own
// migration set, with another table, in the same database. (pgstore uses the
// same name.)
const MigrationTable = "herald_outbox_migrations"

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrationSet = migration.Set{
	Owner: "sqlitestore", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectSQLite3, Table: MigrationTable,
}

// Migration is the state of one schema migration.
type Migration = migration.Migration

// Migrations is the state of every migration, oldest first.
type Migrations = migration.List

// Migrate applies the driver's pending migrations, each in a transaction
// (which holds the write lock, so two processes migrating at once take
// turns; the migrations are written to be repeatable).
func (d *Driver) Migrate(ctx context.Context) error {
	if err := migrationSet.Up(ctx, d.db); err != nil {
		return err
	}
	if err := d.stmts.Prepare(ctx); err != nil {
		return fmt.Errorf("sqlitestore: prepare statements: %w", err)
	}
	return nil
}

// MigrationStatus reports which of the driver's migrations are applied (for
// herald migrate --status). It creates the empty version table when there is
// none.
func (d *Driver) MigrationStatus(ctx context.Context) (Migrations, error) {
	return migrationSet.Status(ctx, d.db)
}
