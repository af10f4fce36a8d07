package app_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testdb"

	_ "modernc.org/sqlite"
)

// A database of a Herald from before outboxes had names records the outbox
// schema's version in herald_outbox_migrations. The drivers of the outbox
// order_outbox rename it, and Herald goes on:
// nothing is migrated twice (which would fail on the existing tables) and
// the status shows every migration applied.
func TestLegacyVersionTableIsRenamed(t *testing.T) {
	t.Parallel()
	const rename = "ALTER TABLE order_outbox_migrations RENAME TO herald_outbox_migrations"
	cases := map[string]legacyDB{}

	sqlitePath := filepath.Join(t.TempDir(), "h.db")
	sqlDB := func(t *testing.T) *sql.DB {
		db, err := sql.Open("sqlite", sqlitePath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	cases["sqlite"] = legacyDB{
		url: "sqlite://" + sqlitePath,
		exec: func(t *testing.T, query string) {
			if _, err := sqlDB(t).Exec(query); err != nil {
				t.Fatal(err)
			}
		},
		count: func(t *testing.T, table string) int {
			var n int
			if err := sqlDB(t).QueryRow("SELECT count(*) FROM sqlite_master WHERE name = ?", table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		},
	}
	pgURL, schema := testdb.PostgresSchema(t)
	pgConn := func(t *testing.T) *pgx.Conn {
		c, err := pgx.Connect(context.Background(), pgURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	cases["postgres"] = legacyDB{
		url: pgURL,
		exec: func(t *testing.T, query string) {
			if _, err := pgConn(t).Exec(context.Background(), query); err != nil {
				t.Fatal(err)
			}
		},
		count: func(t *testing.T, table string) int {
			var n int
			err := pgConn(t).QueryRow(context.Background(),
				"SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", schema, table).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
	}

	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			open := func() *app.Database {
				db, err := app.OpenDatabase(ctx, app.Config{DatabaseURL: c.url})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				return db
			}
			if err := open().Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			// What the previous release left behind.
			c.exec(t, rename)

			db := open()
			ms, err := db.MigrationStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if !m.Applied() {
					t.Errorf("after the rename, %s %s shows as pending", m.Set, m.Name)
				}
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("Migrate on a database of the previous release: %v", err)
			}
			if c.count(t, "herald_outbox_migrations") != 0 || c.count(t, "order_outbox_migrations") != 1 {
				t.Error("the version table was not renamed to order_outbox_migrations")
			}
		})
	}
}

// legacyDB is a database under test: its URL, and how the test reaches it
// behind Herald's back.
type legacyDB struct {
	url   string
	exec  func(t *testing.T, query string)
	count func(t *testing.T, table string) int // tables named table
}
