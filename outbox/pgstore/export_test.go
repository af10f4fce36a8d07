package pgstore

import "io/fs"

// ClaimParkingSQL and ClaimMoveOnSQL are d's claim queries (the walk from a
// cursor), for EXPLAIN in tests.
func ClaimParkingSQL(d *Driver) string { return d.sql.claims[1][0] }
func ClaimMoveOnSQL(d *Driver) string  { return d.sql.claims[0][0] }

// RenderedMigration is the migration file as d's Migrate runs it.
func RenderedMigration(d *Driver, file string) (string, error) {
	b, err := fs.ReadFile(migrationFiles, "migrations/"+file)
	return d.migrations.Names.Replace(string(b)), err
}

// LegacyMigrationTable is the version table of the outbox before outboxes
// had names.
const LegacyMigrationTable = legacyMigrationTable
