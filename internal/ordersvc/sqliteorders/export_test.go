package sqliteorders

import "context"

// MigrateTo applies the orders migrations up to version, so that a test can
// write data under an older schema.
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
	return migrationSet.UpTo(ctx, s.db, version)
}

// MigrateDownTo rolls the orders migrations back to version.
func (s *Store) MigrateDownTo(ctx context.Context, version int64) error {
	return migrationSet.DownTo(ctx, s.db, version)
}
