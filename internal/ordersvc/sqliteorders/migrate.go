package sqliteorders

import (
	"context"
	"embed"
	"fmt"

	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox/migration"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrationSet = migration.Set{
	Owner: "sqliteorders", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectSQLite3, Table: ordersvc.MigrationTable,
}

// Migrate applies the orders schema's pending migrations, recording them in
// ordersvc.MigrationTable. The outbox's tables (sqlitestore's Migrate) must
// be there first: the orders schema builds on them.
func (s *Store) Migrate(ctx context.Context) error {
	if err := migrationSet.Up(ctx, s.db); err != nil {
		return err
	}
	if err := s.stmts.Prepare(ctx); err != nil {
		return fmt.Errorf("sqliteorders: migrate: prepare statements: %w", err)
	}
	return nil
}

// MigrationStatus reports which migrations are applied. It creates the
// empty version table when there is none.
func (s *Store) MigrationStatus(ctx context.Context) (ordersvc.Migrations, error) {
	return migrationSet.Status(ctx, s.db)
}
