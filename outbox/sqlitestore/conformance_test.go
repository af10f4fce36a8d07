package sqlitestore_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
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
		Named:             named,
		Runs:              true,
	})
}

// named returns a migrated driver of the outbox called name on d's handle,
// closed before d's (t.Cleanup runs last in first out).
func named(t *testing.T, d outbox.Driver[*sql.Tx], name string) outbox.Driver[*sql.Tx] {
	t.Helper()
	nd, err := sqlitestore.New(d.(*sqlitestore.Driver).DB(), sqlitestore.Config{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nd.Close(); err != nil {
			t.Errorf("close %s: %v", name, err)
		}
	})
	if err := nd.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return nd
}
