package sqlitestore_test

import (
	"database/sql"
	"testing"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/storetest"
)

// TestConformance runs the suite every driver passes. SQLite has one writer
// at a time and an open batch holds the write lock, so the suite skips the
// tests that need two write transactions open at once; this package's own
// tests cover what SQLite does instead (a second claim or writer waits).
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness[*sql.Tx]{
		New:               func(t *testing.T) outbox.Driver[*sql.Tx] { return newDriver(t) },
		ConcurrentWriters: false,
	})
}
