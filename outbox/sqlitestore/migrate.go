package sqlitestore

import (
	"context"
	"embed"
	"fmt"

	"github.com/heraldhq/herald/outbox/migration"
)

// migrationFiles are templates (see placeholders): each Driver renders them
// for its outbox and records their versions in its own table,
// Names().Migrations, so that outboxes of other names, and the application's
// own migration sets, keep separate histories in one database.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is the state of one schema migration.
type Migration = migration.Migration

// Migrations is the state of every migration, oldest first.
type Migrations = migration.List

// Migrate applies the driver's pending migrations, each in a transaction
// (which holds the write lock, so two processes migrating at once take
// turns; the migrations are written to be repeatable).
func (d *Driver) Migrate(ctx context.Context) error {
	if err := d.migrations.Up(ctx, d.db); err != nil {
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
	return d.migrations.Status(ctx, d.db)
}
