package cli_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/cli"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"

	_ "modernc.org/sqlite"
)

// herald check finds an event that left the outbox behind the relay's back
// (its row deleted by hand): audited, neither pending, dead-lettered nor on
// the broker. Events still pending, and events the relay published, are
// not reported.
func TestCheckReportsAnEventThatNeverReachedTheBroker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herald.db")
	dbURL := "sqlite://" + path
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	env := []string{"HERALD_DATABASE_URL=" + dbURL, "HERALD_BROKER_URL=" + srv.ClientURL()}

	db, err := app.OpenDatabase(ctx, app.Config{DatabaseURL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	create := func() order.Order {
		o, err := db.Orders.CreateOrder(ctx, order.CreateOrder{CustomerID: "c-1", Currency: "EUR",
			LineItems: []order.CreateLineItem{{ProductID: "p-1", ProductType: order.ProductPhysical, Quantity: 1, UnitPrice: 100}}},
			order.RequestOptions{Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	published, lost := create(), create()

	// Everything pending: nothing to report.
	if out := mustRun(t, env, "check"); !strings.Contains(out, "2 audited events, 0 events on the broker, 0 mismatches") {
		t.Fatalf("check with every event pending:\n%s", out)
	}

	// One event's row vanishes behind the relay's back; the relay publishes the other.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	res, err := raw.ExecContext(ctx, `DELETE FROM order_outbox WHERE aggregate_id = ?`, lost.ID.String())
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("delete the outbox row: %d rows, %v", n, err)
	}
	pub, err := natsjs.Connect(ctx, srv.ClientURL(), app.NATSConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	relay := outbox.NewRelay(db.Source, pub, outbox.RelayConfig{PollInterval: 10 * time.Millisecond})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(rctx) }()
	for deadline := time.Now().Add(time.Minute); relay.Counters().Published < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay published nothing")
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	metrics := filepath.Join(t.TempDir(), "herald_check.prom")
	r := run(t, env, "check", "--textfile", metrics)
	if prom, err := os.ReadFile(metrics); err != nil || !strings.Contains(string(prom), "herald_check_mismatches 1\n") ||
		!strings.Contains(string(prom), "herald_check_audited_events 2\n") {
		t.Errorf("--textfile wrote %q, %v", prom, err)
	}
	if r.code != cli.ExitFailure {
		t.Fatalf("check: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "MISSING") || !strings.Contains(r.stdout, "order "+lost.ID.String()) ||
		strings.Contains(r.stdout, "order "+published.ID.String()) ||
		!strings.Contains(r.stdout, "2 audited events, 1 events on the broker, 1 mismatches") {
		t.Fatalf("check output:\n%s", r.stdout)
	}
	if r := run(t, env, "check", "--since", "-1h"); r.code != 2 {
		t.Errorf("check --since -1h: exit %d, want 2", r.code)
	}
}
