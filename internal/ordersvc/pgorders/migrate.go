package pgorders

import (
	"context"
	"embed"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox/migration"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var migrationSet = migration.Set{
	Owner: "pgorders", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectPostgres, Table: ordersvc.MigrationTable,
}

// Migrate applies the orders schema's pending migrations to the pool's
// current schema, recording them in ordersvc.MigrationTable. Concurrent
// callers take turns on an advisory lock keyed on the schema. The outbox's
// tables (pgstore's Migrate) must be there first: the orders schema builds
// on them.
func (s *Store) Migrate(ctx context.Context) error {
	db := stdlib.OpenDBFromPool(s.pool) // closing it leaves the pool open
	defer func() { _ = db.Close() }()
	return migrationSet.Up(ctx, db)
}

// MigrationStatus reports which migrations are applied. It creates the
// empty version table when there is none.
func (s *Store) MigrationStatus(ctx context.Context) (ordersvc.Migrations, error) {
	db := stdlib.OpenDBFromPool(s.pool)
	defer func() { _ = db.Close() }()
	return migrationSet.Status(ctx, db)
}
