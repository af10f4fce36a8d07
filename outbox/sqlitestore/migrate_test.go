package sqlitestore_test

import (
	"context"
	"database/sql"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	st, err := d.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || !st[0].Applied() || st[0].Version != 1 || st[0].Name != "00001_outbox.sql" || st.Pending() != 0 {
		t.Fatalf("status = %+v, want migration 1 applied", st)
	}
	if s := st.String(); !strings.Contains(s, "00001_outbox.sql") || !strings.Contains(s, "applied") {
		t.Fatalf("status prints %q", s)
	}
	if n := count(t, d, `SELECT count(*) FROM sqlite_schema WHERE name = 'goose_db_version'`); n != 0 {
		t.Errorf("goose's default version table exists; the driver must use its own")
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "1", "busy_timeout": "10000", "foreign_keys": "1"} {
		var got string
		if err := d.DB().QueryRowContext(ctx, `PRAGMA `+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q, %v; want %s", pragma, got, err, want)
		}
	}
}

// TestMigrateNamesEveryObject: every object the migrations create for an
// outbox is named after it, and the names are those outbox.NamesOf gives.
func TestMigrateNamesEveryObject(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	for _, name := range []string{"", "payments"} {
		d := openNamed(t, path, name)
		n := d.Names()
		if want, err := outbox.NamesOf(name); err != nil || n != want {
			t.Fatalf("Names() = %+v, want %+v (%v)", n, want, err)
		}
		want := []string{
			"index " + n.DeadLetters + "_open", "index " + n.DeadLetters + "_open_event", "index " + n.Name + "_due_heads",
			"table " + n.Name, "table " + n.DeadLetters, "table " + n.Migrations, "table " + n.Sequences,
			"trigger " + n.Name + "_next_head",
		}
		got := schemaObjects(t, d.DB(), n.Name)
		if !slices.Equal(got, want) {
			t.Errorf("%s: objects %q, want %q", n.Name, got, want)
		}
	}
	// The default outbox's objects are all named outbox…; the loop's
	// prefix match would not tell a stray unprefixed object apart.
	if got := schemaObjects(t, openDriver(t, path).DB(), ""); len(got) != 16 {
		t.Errorf("the database holds %d objects, want the 8 of each outbox: %q", len(got), got)
	}
}

// schemaObjects lists "type name" of the objects whose name starts with
// prefix, SQLite's own left out.
func schemaObjects(t *testing.T, db *sql.DB, prefix string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT type || ' ' || name FROM sqlite_schema
		WHERE name NOT LIKE 'sqlite\_%' ESCAPE '\' AND substr(name, 1, length(?1)) = ?1 ORDER BY 1`, prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQueriesNameTheirOutbox: no query or migration of an outbox keeps a
// placeholder or names the orders service's tables.
func TestQueriesNameTheirOutbox(t *testing.T) {
	t.Parallel()
	d := openNamed(t, testdb.SQLitePath(t), "payments")
	texts := append(sqlitestore.Queries(d), sqlitestore.Render(d.Names(), sqlitestore.MigrationTemplate()))
	for _, q := range texts {
		if strings.Contains(q, "{{") || strings.Contains(q, "}}") || strings.Contains(q, "order_outbox") {
			t.Errorf("query names no outbox, or another one:\n%s", q)
		}
		if !strings.Contains(q, "payments") {
			t.Errorf("query does not name the payments outbox:\n%s", q)
		}
	}
}

func TestMigrationStatusPending(t *testing.T) {
	t.Parallel()
	d, err := sqlitestore.Open(testdb.SQLitePath(t), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	st, err := d.MigrationStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Applied() || st.Pending() != 1 || !strings.Contains(st.String(), "pending") {
		t.Fatalf("status = %v, want one pending migration", st)
	}
}

// The orders service's outbox was created before outboxes were named, by
// the migration testdata/legacy holds (the file as it was), which recorded
// its version in herald_outbox_migrations.
const (
	legacyName         = "order_outbox"
	legacyVersionTable = "herald_outbox_migrations"
)

// TestLegacyTemplate: rendered for the orders service's outbox, the
// migration template is the legacy file statement for statement (only the
// comment heading the file differs).
func TestLegacyTemplate(t *testing.T) {
	t.Parallel()
	legacy, err := os.ReadFile("testdata/legacy/00001_outbox.sql")
	if err != nil {
		t.Fatal(err)
	}
	names, err := outbox.NamesOf(legacyName)
	if err != nil {
		t.Fatal(err)
	}
	body := func(s string) string {
		_, after, ok := strings.Cut(s, "-- +goose Up\n")
		if !ok {
			t.Fatalf("no -- +goose Up in\n%s", s)
		}
		return after
	}
	if got, want := body(sqlitestore.Render(names, sqlitestore.MigrationTemplate())), body(string(legacy)); got != want {
		t.Errorf("the template rendered for %s is not the legacy migration:\n%s\nwant:\n%s", legacyName, got, want)
	}
}

// TestLegacySchema: a database the legacy migration made migrates with no
// change for a driver named order_outbox: its objects, their definitions
// and its events stay as they were, and its version table is adopted
// (renamed to order_outbox_migrations, so the migration does not run
// again). An outbox of another name adopts nothing. A new database gets the
// very same objects.
func TestLegacySchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := testdb.SQLitePath(t)
	legacy, err := sqlitestore.Open(path, sqlitestore.Config{Name: legacyName})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = legacy.Close() }()
	set := migration.Set{Owner: "legacy", FS: os.DirFS("testdata"), Dir: "legacy", Dialect: goose.DialectSQLite3, Table: legacyVersionTable}
	if err := set.Up(ctx, legacy.DB()); err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.DB().ExecContext(ctx, `INSERT INTO order_outbox
		(id, aggregate_type, aggregate_id, event_type, payload, sequence, next_attempt_at, created_at, head)
		VALUES ('01890a5d-ac96-774b-bcce-000000000001', 'order', 'a', 'order.created', '{}', 1, 0, 0, 1)`); err != nil {
		t.Fatal(err)
	}
	openDriver(t, path) // the outbox named outbox, beside it, adopts nothing
	before := schema(t, legacy.DB())
	if before[legacyVersionTable] == "" {
		t.Fatalf("another outbox's Migrate took %s", legacyVersionTable)
	}
	versions := count(t, legacy, `SELECT count(*) FROM `+legacyVersionTable)

	st, err := legacy.MigrationStatus(ctx)
	if err != nil || len(st) != 1 || st.Pending() != 0 {
		t.Fatalf("status of the legacy database: %v, %v; want migration 1 applied", st, err)
	}
	if err := legacy.Migrate(ctx); err != nil {
		t.Fatalf("Migrate on the legacy database: %v", err)
	}
	after := schema(t, legacy.DB())
	own := legacyName + "_migrations"
	if _, ok := after[legacyVersionTable]; ok || after[own] == "" {
		t.Errorf("version tables after Migrate: %s %t, %s %t; want the first renamed to the second",
			legacyVersionTable, ok, own, after[own] != "")
	}
	if n := count(t, legacy, `SELECT count(*) FROM `+own); n != versions {
		t.Errorf("%s has %d rows, %s had %d: a migration ran again", own, n, legacyVersionTable, versions)
	}
	delete(before, legacyVersionTable)
	delete(after, own)
	if !maps.Equal(after, before) {
		for name, def := range after {
			if before[name] != def {
				t.Errorf("Migrate changed %s:\n%s\nwas:\n%s", name, def, before[name])
			}
		}
		for name := range before {
			if _, ok := after[name]; !ok {
				t.Errorf("Migrate dropped %s", name)
			}
		}
	}
	b := claim(t, legacy, outbox.ClaimParams{})
	if got := keys(b.Records()); got != "a/1" {
		t.Fatalf("the legacy event: claimed %q, want a/1", got)
	}
	finish(t, b, published)

	ordersOutbox := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for name, def := range m {
			if strings.HasPrefix(name, legacyName) && name != own {
				out[name] = def
			}
		}
		return out
	}
	fresh, old := ordersOutbox(schema(t, openNamed(t, testdb.SQLitePath(t), legacyName).DB())), ordersOutbox(before)
	if len(old) != 7 || !maps.Equal(fresh, old) {
		t.Errorf("a new database's objects:\n%q\nthe legacy database's:\n%q", fresh, old)
	}
}

// schema maps each object of the database to "type on table: definition".
func schema(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT name, type || ' on ' || tbl_name || ': ' || coalesce(sql, '') FROM sqlite_schema`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	out := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		out[name] = def
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
