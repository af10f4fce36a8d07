package pgstore

import (
	"context"
	"embed"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
)

// The migrations are templates of one outbox: see nameReplacer.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationSetOf is the migration set of the outbox named n. Its version
// table, n.Migrations, is the outbox's own, so that an application's
// migrations in the same schema (the orders service's, for one) and other
// outboxes keep separate histories.
func migrationSetOf(n outbox.Names, r *strings.Replacer) migration.Set {
	return migration.Set{
		Owner: "pgstore", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectPostgres,
		Table: n.Migrations, Names: r,
	}
}

// Migration is the state of one schema migration.
type Migration = migration.Migration

// Migrations is the state of every migration, oldest first.
type Migrations = migration.List

// Migrate applies the outbox schema's pending migrations to the pool's
// current schema. Concurrent callers (several relays starting at once) take
// turns on an advisory lock keyed on the schema and the version table.
func (d *Driver) Migrate(ctx context.Context) error {
	if err := d.adoptLegacyVersions(ctx); err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(d.pool) // closing it leaves the pool open
	defer func() { _ = db.Close() }()
	return d.migrations.Up(ctx, db)
}

// MigrationStatus reports which migrations are applied (for herald migrate
// --status). It creates the empty version table when there is none.
func (d *Driver) MigrationStatus(ctx context.Context) (Migrations, error) {
	if err := d.adoptLegacyVersions(ctx); err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(d.pool)
	defer func() { _ = db.Close() }()
	return d.migrations.Status(ctx, db)
}

// Before outboxes had names there was one, whose tables are those of the
// outbox now named order_outbox, and it recorded its migrations in
// herald_outbox_migrations.
const (
	legacyName           = "order_outbox"
	legacyMigrationTable = "herald_outbox_migrations"
)

// legacyCheckSQL tells whether the current schema has the legacy version
// table and not yet the outbox's own ($1). Goose, too, looks for its table
// in the current schema.
const legacyCheckSQL = `
SELECT current_schema(),
	NOT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1)
	AND EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = $2)`

// adoptLegacyVersions gives the outbox order_outbox of a database migrated
// before outboxes had names its history: it renames the legacy version
// table to order_outbox_migrations, so that goose finds the migrations
// applied instead of creating the existing tables again. (Herald's own
// upgrade, in internal/app, renames it the same way before it migrates;
// whichever comes first does it, the other finds nothing to rename.) Other
// outboxes have no history to adopt, and a schema whose outbox has its own
// version table is left alone.
func (d *Driver) adoptLegacyVersions(ctx context.Context) error {
	if d.names.Name != legacyName {
		return nil
	}
	var (
		schema *string
		adopt  bool
	)
	err := d.pool.QueryRow(ctx, legacyCheckSQL, d.names.Migrations, legacyMigrationTable).Scan(&schema, &adopt)
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	if !adopt { // also when no schema is current: nothing exists there
		return nil
	}
	// Two migrators at once are safe: the second waits for the first's
	// rename, then finds no table of the old name.
	_, err = d.pool.Exec(ctx, "ALTER TABLE IF EXISTS "+pgx.Identifier{*schema, legacyMigrationTable}.Sanitize()+
		" RENAME TO "+pgx.Identifier{d.names.Migrations}.Sanitize())
	if err != nil {
		return fmt.Errorf("pgstore: migrate: rename %s to %s: %w", legacyMigrationTable, d.names.Migrations, err)
	}
	return nil
}
