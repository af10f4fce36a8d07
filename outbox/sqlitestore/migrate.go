package sqlitestore

import (
	"context"
	"database/sql"
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
// turns; the migrations are written to be repeatable). A database migrated
// before outboxes had names holds the outbox order_outbox with its versions
// in herald_outbox_migrations: Migrate and MigrationStatus of that outbox
// rename the table to order_outbox_migrations first.
func (d *Driver) Migrate(ctx context.Context) error {
	if err := d.adoptLegacyVersions(ctx); err != nil {
		return err
	}
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
	if err := d.adoptLegacyVersions(ctx); err != nil {
		return nil, err
	}
	return d.migrations.Status(ctx, d.db)
}

// Before outboxes had names there was one, whose tables are those of the
// outbox now named order_outbox, and it recorded its migrations in
// herald_outbox_migrations.
const (
	legacyName           = "order_outbox"
	legacyMigrationTable = "herald_outbox_migrations"
)

// adoptLegacyVersions gives the outbox order_outbox of a database migrated
// before outboxes had names its history: it renames the legacy version
// table to order_outbox_migrations, so that goose finds the migrations
// applied rather than running them again. (Herald's own upgrade, in
// internal/app, renames it the same way before it migrates, and pgstore
// does the same on PostgreSQL; whichever comes first renames, the other
// finds nothing to rename.) Other outboxes have no history to adopt, and a
// database whose outbox has its own version table is left alone. The
// rename checks again in its write transaction, so two processes adopting
// at once take turns and the second finds nothing to do.
func (d *Driver) adoptLegacyVersions(ctx context.Context) error {
	if d.names.Name != legacyName {
		return nil
	}
	adopt, err := d.legacyVersionsToAdopt(ctx, d.db)
	if err == nil && adopt { // looked at without the write lock first: usually there is nothing
		err = d.WithTx(ctx, func(tx *sql.Tx) error {
			adopt, err := d.legacyVersionsToAdopt(ctx, tx)
			if err != nil || !adopt {
				return err
			}
			// Both names are constants: nothing to quote.
			_, err = tx.ExecContext(ctx, "ALTER TABLE "+legacyMigrationTable+" RENAME TO "+d.names.Migrations)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlitestore: migrate: rename %s to %s: %w", legacyMigrationTable, d.names.Migrations, err)
	}
	return nil
}

// queryRower is a *sql.DB or a *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// legacyVersionsToAdopt tells whether the legacy version table is there and
// the outbox's own is not.
func (d *Driver) legacyVersionsToAdopt(ctx context.Context, q queryRower) (bool, error) {
	var adopt bool
	err := q.QueryRowContext(ctx, `SELECT
	NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)
	AND EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?2)`,
		d.names.Migrations, legacyMigrationTable).Scan(&adopt)
	return adopt, err
}
