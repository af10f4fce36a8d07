package pgstore_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
	"github.com/heraldhq/herald/outbox/pgstore"
)

func TestInvalidName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Payments", "pay-ments", `x"; DROP TABLE t; --`, strings.Repeat("x", outbox.MaxOutboxNameLen+1)} {
		d, err := pgstore.New(nil, pgstore.Config{Name: name})
		if d != nil || err == nil || !strings.Contains(err.Error(), "invalid outbox name") {
			t.Errorf("New with Name %q: %v, %v; want an invalid-name error", name, d, err)
		}
	}
}

// Two outboxes in one schema each hear their own wake-ups only: a
// notification of one does not wake the other's Listen.
func TestListenHearsItsOwnOutboxOnly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pool, schema := newPool(t, 8)
	type listener struct {
		d, writer *pgstore.Driver
		woke      chan struct{}
		done      chan error
	}
	var ls []*listener
	for _, name := range []string{schema + "_a", schema + "_b"} {
		l := &listener{
			d:    migrated(t, pool, pgstore.Config{Name: name}),
			woke: make(chan struct{}, 64),
			done: make(chan error, 1),
		}
		// Another driver of the same outbox writes, so that the wake-up
		// goes through PostgreSQL rather than in-process.
		l.writer = migrated(t, pool, pgstore.Config{Name: name})
		go func() { l.done <- l.d.Listen(ctx, func() { l.woke <- struct{}{} }) }()
		<-l.woke // listening
		ls = append(ls, l)
	}
	quiet := func(l *listener, what string) {
		t.Helper()
		select {
		case <-l.woke:
			t.Fatalf("%s woke the outbox %s", what, l.d.Names().Name)
		case <-time.After(500 * time.Millisecond):
		}
	}
	wakes := func(l *listener, what string) {
		t.Helper()
		select {
		case <-l.woke:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not wake the outbox %s", what, l.d.Names().Name)
		}
	}
	for i, l := range ls {
		other := ls[1-i]
		if _, err := pool.Exec(ctx, "SELECT pg_notify($1, '')", l.d.Names().Channel); err != nil {
			t.Fatal(err)
		}
		wakes(l, "pg_notify on its channel")
		quiet(other, "pg_notify on another outbox's channel")

		client := outbox.NewClient[pgx.Tx](l.writer)
		if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		wakes(l, "an enqueue")
		quiet(other, "an enqueue into another outbox")
	}
	cancel()
	for _, l := range ls {
		if err := <-l.done; err != nil {
			t.Fatalf("Listen: %v", err)
		}
	}
}

// legacySet is the outbox schema as Herald created it before outboxes had
// names: testdata/unnamed/00001_outbox.sql is migrations/00001_outbox.sql
// as it was then (git show c517aed:outbox/pgstore/migrations/00001_outbox.sql),
// recorded in the version table of the time.
var legacySet = migration.Set{
	Owner: "legacy", FS: os.DirFS("testdata"), Dir: "unnamed", Dialect: goose.DialectPostgres,
	Table: pgstore.LegacyMigrationTable,
}

// The outbox order_outbox is, object for object, the schema Herald created
// before outboxes had names, and a database created then migrates with no
// change: the driver adopts the old version table (renaming it) instead of
// creating the tables again.
func TestOrderOutboxIsTheUnnamedSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	// The template, rendered, is the old file; only comments differ.
	oldPool, oldSchema := newPool(t, 4)
	d, err := pgstore.New(oldPool, pgstore.Config{Name: "order_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := pgstore.RenderedMigration(d, "00001_outbox.sql")
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile("testdata/unnamed/00001_outbox.sql")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := withoutComments(rendered), withoutComments(string(old)); got != want {
		t.Fatalf("00001_outbox.sql rendered for order_outbox:\n%s\nwant, as before outboxes had names:\n%s", got, want)
	}

	// A database of the time, with an event written then.
	db := stdlib.OpenDBFromPool(oldPool)
	defer func() { _ = db.Close() }()
	if err := legacySet.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := oldPool.Exec(ctx, `
		INSERT INTO order_outbox_sequences VALUES ('order', 'A', 1);
		INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, sequence)
		VALUES ('0195d3a8-0c6c-7c8e-8a5e-3f2d1c0b9a87', 'order', 'A', 'order.created', '{}', 1)`); err != nil {
		t.Fatal(err)
	}
	before := schemaObjects(t, oldPool, oldSchema)
	versions := func(table string) []string {
		t.Helper()
		rows, _ := oldPool.Query(ctx, "SELECT format('%s %s %s', version_id, is_applied, tstamp) FROM "+table+" ORDER BY id")
		vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	history := versions(pgstore.LegacyMigrationTable)

	// Concurrent migrators adopt the old history (the old version table
	// becomes order_outbox_migrations) once, and then there is nothing to
	// adopt.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = d.Migrate(ctx) })
	}
	wg.Wait()
	for _, err := range append(errs, d.Migrate(ctx)) {
		if err != nil {
			t.Fatalf("Migrate on the unnamed schema: %v", err)
		}
	}
	status, err := d.MigrationStatus(ctx)
	if err != nil || status.Pending() != 0 {
		t.Fatalf("MigrationStatus after Migrate: %v, %v", status, err)
	}
	if after := schemaObjects(t, oldPool, oldSchema); !slices.Equal(after, before) {
		t.Fatalf("Migrate changed the schema:\n%s\nwas:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	if got := versions(d.Names().Migrations); !slices.Equal(got, history) || len(got) < 2 {
		t.Fatalf("versions %v, want %v (adopted)", got, history)
	}
	var legacyLeft bool
	if err := oldPool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgstore.LegacyMigrationTable).Scan(&legacyLeft); err != nil || legacyLeft {
		t.Fatalf("%s is still there (%v)", pgstore.LegacyMigrationTable, err)
	}
	// The event written then is claimed now, and new ones follow it.
	client := outbox.NewClient[pgx.Tx](d)
	enq, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "order.paid", Payload: json.RawMessage(`{}`)})
	if err != nil || enq[0].Sequence != 2 {
		t.Fatalf("Enqueue: %v, %v; want sequence 2", enq, err)
	}
	b, err := d.Claim(ctx, outbox.ClaimParams{Limit: 10})
	if err != nil || len(b.Records()) != 1 || b.Records()[0].Type != "order.created" {
		t.Fatalf("Claim: %v, %v", b, err)
	}
	releaseAtCleanup(t, b)
	if err := b.Finish(ctx, []outbox.Outcome{{Kind: outbox.OutcomePublished}}); err != nil {
		t.Fatal(err)
	}

	// A new database's order_outbox has the same objects.
	freshPool, freshSchema := newPool(t, 4)
	migrated(t, freshPool, pgstore.Config{Name: "order_outbox"})
	if fresh := schemaObjects(t, freshPool, freshSchema); !slices.Equal(fresh, before) {
		t.Fatalf("a new order_outbox:\n%s\nbefore outboxes had names:\n%s", strings.Join(fresh, "\n"), strings.Join(before, "\n"))
	}
}

// withoutComments drops the comment lines of a migration, except goose's
// annotations.
func withoutComments(sql string) string {
	var out []string
	for l := range strings.Lines(sql) {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "--") && !strings.HasPrefix(t, "-- +goose") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// schemaObjects describes every relation, column, constraint and index in
// schema except the version tables, with the schema's name left out.
func schemaObjects(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, _ := pool.Query(t.Context(), `
		SELECT format('relation %s %s %s', c.relname, c.relkind, c.reloptions)
		FROM pg_class c WHERE c.relnamespace = $1::text::regnamespace
		UNION ALL
		SELECT format('column %s.%s %s %s %s %s', table_name, column_name, data_type, is_nullable,
			column_default, is_identity)
		FROM information_schema.columns WHERE table_schema = $1::text
		UNION ALL
		SELECT format('constraint %s on %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid))
		FROM pg_constraint WHERE connamespace = $1::text::regnamespace
		UNION ALL
		SELECT format('index %s', pg_get_indexdef(i.indexrelid))
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = $1::text::regnamespace
		ORDER BY 1`, schema)
	objects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objects {
		if !strings.Contains(o, "_migrations") {
			out = append(out, strings.ReplaceAll(o, schema+".", ""))
		}
	}
	if len(out) < 20 {
		t.Fatalf("schema %s holds only %v", schema, out)
	}
	return out
}
