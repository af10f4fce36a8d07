package sqlitestore

import (
	"time"

	"github.com/heraldhq/herald/outbox"
)

// SetClock makes d read the time from now (for tests of due times).
func SetClock(d *Driver, now func() time.Time) { d.now = now }

// ClaimSQL and ClaimMoveOnSQL are d's claim queries, for plan checks.
func ClaimSQL(d *Driver) string       { return d.q.claim }
func ClaimMoveOnSQL(d *Driver) string { return d.q.claimMoveOn }

// Queries returns every query of d, as d runs them.
func Queries(d *Driver) []string { return d.q.all() }

// Render renders a template of the driver's queries or migrations for the
// outbox names.
func Render(names outbox.Names, template string) string { return placeholders(names).Replace(template) }

// MigrationTemplate is the text of migration 00001 as embedded.
func MigrationTemplate() string {
	b, err := migrationFiles.ReadFile("migrations/00001_outbox.sql")
	if err != nil {
		panic(err)
	}
	return string(b)
}
