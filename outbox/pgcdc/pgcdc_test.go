package pgcdc_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox/pgcdc"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// The guarantees of the CDC relay (kills, outages, two relays, poison
// events) are tested in internal/guarantees/cdc_test.go; these are the
// source's set-up and operator functions.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newDriver migrates an outbox in a fresh schema; the slot of the test is
// named after the schema and dropped at cleanup.
func newDriver(t *testing.T, connURL string) (*pgstore.Driver, string) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), connURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	d, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(connURL)
	if err != nil {
		t.Fatal(err)
	}
	return d, "herald_test_" + u.Query().Get("search_path")
}

func TestSetupLagAndDropSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connURL, _ := testdb.PostgresSchema(t)
	d, slot := newDriver(t, connURL)
	src, err := pgcdc.New(d, connURL, pgcdc.Config{Slot: slot, Publication: slot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.DropSlot(context.Background()) })
	if err := src.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.Setup(ctx); err != nil { // again: nothing to create
		t.Fatalf("second Setup: %v", err)
	}
	l, err := src.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Exists || l.Active || l.Bytes < 0 {
		t.Fatalf("lag of a new slot nobody streams: %+v", l)
	}
	if err := src.DropSlot(ctx); err != nil {
		t.Fatal(err)
	}
	if l, err = src.Lag(ctx); err != nil || l.Exists {
		t.Fatalf("lag after DropSlot: %+v, %v", l, err)
	}
	var pubs int
	if err := d.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_publication WHERE pubname = $1", slot).Scan(&pubs); err != nil || pubs != 0 {
		t.Fatalf("publications left: %d, %v", pubs, err)
	}
}

// A role without the REPLICATION attribute is refused at start, with an
// error that says what to do.
func TestCheckRefusesARoleWithoutReplication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	connURL, schema := testdb.PostgresSchema(t)
	d, slot := newDriver(t, connURL)
	role := "herald_test_norepl_" + strings.TrimPrefix(schema, "t_")
	if _, err := d.Pool().Exec(ctx, "CREATE ROLE "+role+" LOGIN NOSUPERUSER NOREPLICATION"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.Pool().Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, _ := url.Parse(connURL)
	u.User = url.User(role)
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	limited, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgcdc.New(limited, u.String(), pgcdc.Config{Slot: slot, Publication: slot})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Setup(ctx)
	if !errors.Is(err, pgcdc.ErrNoReplication) || !strings.Contains(err.Error(), "REPLICATION") {
		t.Fatalf("Setup as a role without REPLICATION: %v", err)
	}
}

func TestNewRefusesBadNames(t *testing.T) {
	t.Parallel()
	connURL, _ := testdb.PostgresSchema(t)
	d, _ := newDriver(t, connURL)
	for _, cfg := range []pgcdc.Config{{Slot: "Bad-Slot"}, {Slot: "1slot"}, {Publication: "x y"}, {Slot: strings.Repeat("s", 64)}} {
		if _, err := pgcdc.New(d, connURL, cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	src, err := pgcdc.New(d, connURL, pgcdc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Slot() != "herald_order_outbox" || src.Publication() != "herald_order_outbox" {
		t.Fatalf("default names %s, %s", src.Slot(), src.Publication())
	}
}

// Setup refuses an outbox whose tables do not exist, saying to migrate.
func TestSetupNeedsTheTables(t *testing.T) {
	t.Parallel()
	connURL, _ := testdb.PostgresSchema(t)
	pool, err := pgxpool.New(context.Background(), connURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	d, err := pgstore.New(pool, pgstore.Config{Name: "order_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgcdc.New(d, connURL, pgcdc.Config{Slot: "herald_test_unused", Publication: "herald_test_unused"})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Setup(context.Background()); err == nil || !strings.Contains(err.Error(), "migrate") {
		t.Fatalf("Setup without tables: %v", err)
	}
	var n int
	_ = pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'herald_test_unused'").Scan(&n)
	if n != 0 {
		t.Fatal("Setup created a slot for an outbox without tables")
	}
}
