package pgorders

import (
	"context"

	"github.com/jackc/pgx/v5/stdlib"
)

// MigrateTo applies the orders migrations up to version, so that a test can
// write data under an older schema.
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	db := stdlib.OpenDBFromPool(s.pool)
	defer func() { _ = db.Close() }()
	return migrationSet.UpTo(ctx, db, version)
}

// MigrateDownTo rolls the orders migrations back to version.
func (s *Store) MigrateDownTo(ctx context.Context, version int64) error {
	db := stdlib.OpenDBFromPool(s.pool)
	defer func() { _ = db.Close() }()
	return migrationSet.DownTo(ctx, db, version)
}
