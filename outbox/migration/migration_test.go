package migration_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/outbox/migration"

	_ "modernc.org/sqlite"
)

func TestList(t *testing.T) {
	t.Parallel()
	ms := migration.List{
		{Version: 1, Name: "00001_a.sql", AppliedAt: time.Date(2031, 5, 6, 7, 8, 9, 0, time.FixedZone("x", 3600))},
		{Version: 2, Name: "00002_b.sql"},
	}
	if ms.Pending() != 1 || !ms[0].Applied() || ms[1].Applied() {
		t.Fatalf("pending = %d", ms.Pending())
	}
	want := "    1  00001_a.sql                              applied 2031-05-06T06:08:09Z\n" +
		"    2  00002_b.sql                              pending\n"
	if got := ms.String(); got != want {
		t.Errorf("String =\n%q\nwant\n%q", got, want)
	}
	type wrapped struct {
		Set string
		migration.Migration
	}
	if n := migration.Pending([]wrapped{{"a", ms[0]}, {"b", ms[1]}, {"b", ms[1]}}); n != 2 {
		t.Errorf("Pending(wrapped) = %d, want 2", n)
	}
}

func TestSetSQLite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+t.TempDir()+"/m.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	set := migration.Set{
		Owner: "test",
		FS: fstest.MapFS{
			"m/00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a (x INTEGER);\n")},
			"m/00002_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b (x INTEGER);\n")},
		},
		Dir: "m", Dialect: goose.DialectSQLite3, Table: "test_migrations",
	}
	ms, err := set.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms.Pending() != 2 || ms[0].Name != "00001_a.sql" || ms[1].Version != 2 {
		t.Fatalf("before Up: %v", ms)
	}
	for range 2 { // the second Up has nothing to do
		if err := set.Up(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if ms, err = set.Status(ctx, db); err != nil {
		t.Fatal(err)
	}
	if ms.Pending() != 0 || ms[0].AppliedAt.Location() != time.UTC {
		t.Fatalf("after Up: %v", ms)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Errorf("the set closed the caller's handle: %v", err)
	}

	bad := set
	bad.FS = fstest.MapFS{"m/00001_a.sql": {Data: []byte("-- +goose Up\nNOT SQL;\n")}}
	bad.Table = "bad_migrations"
	if err := bad.Up(ctx, db); err == nil || !strings.HasPrefix(err.Error(), "test: migrate: ") {
		t.Errorf("Up of a bad migration: %v", err)
	}
}

// One set of files serves several names: two outboxes in one database each
// get their own tables and their own history.
func TestSetNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+t.TempDir()+"/n.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	files := fstest.MapFS{"m/00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE {{name}}_events (x INTEGER);\n")}}
	for _, name := range []string{"payments", "invoices"} {
		set := migration.Set{
			Owner: "test", FS: files, Dir: "m", Dialect: goose.DialectSQLite3,
			Table: name + "_migrations", Names: strings.NewReplacer("{{name}}", name),
		}
		if err := set.Up(ctx, db); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO "+name+"_events VALUES (1)"); err != nil {
			t.Fatalf("%s: the rendered table is missing: %v", name, err)
		}
	}
}
