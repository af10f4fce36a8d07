package sqliteorders_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/ordersvctest"
	"github.com/heraldhq/herald/internal/ordersvc/sqliteorders"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// open returns the outbox driver on a fresh database file and an orders
// store on its handle, closed when the test ends.
func open(t testing.TB) (*sqlitestore.Driver, *sqliteorders.Store) {
	t.Helper()
	driver, err := sqlitestore.Open(testdb.SQLitePath(t), sqlitestore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	store := sqliteorders.New(driver.DB(), outbox.NewClient[*sql.Tx](driver))
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
		if err := driver.Close(); err != nil {
			t.Errorf("close driver: %v", err)
		}
	})
	return driver, store
}

// setup returns a harness on a fresh, migrated database.
func setup(t testing.TB) ordersvctest.Harness {
	t.Helper()
	ctx := context.Background()
	driver, store := open(t)
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return harness(driver.DB(), store)
}

// harness is the suite's view of store's database.
func harness(db *sql.DB, store *sqliteorders.Store) ordersvctest.Harness {
	ctx := context.Background()
	return ordersvctest.Harness{
		Store: store,
		Outbox: func(t testing.TB, orderID uuid.UUID) []ordersvctest.OutboxEvent {
			t.Helper()
			rows, err := db.QueryContext(ctx, `SELECT id, aggregate_type, aggregate_id, event_type, payload, headers, sequence
				FROM order_outbox WHERE aggregate_type = 'order' AND aggregate_id = ?1 ORDER BY sequence`, orderID.String())
			if err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			defer func() { _ = rows.Close() }()
			var evs []ordersvctest.OutboxEvent
			for rows.Next() {
				var (
					e                ordersvctest.OutboxEvent
					payload, headers string
				)
				if err := rows.Scan(&e.ID, &e.AggregateType, &e.AggregateID, &e.Type, &payload, &headers, &e.Sequence); err != nil {
					t.Fatalf("read outbox: %v", err)
				}
				e.Payload = json.RawMessage(payload)
				if err := json.Unmarshal([]byte(headers), &e.Headers); err != nil {
					t.Fatalf("headers %q: %v", headers, err)
				}
				evs = append(evs, e)
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			return evs
		},
		Count: func(t testing.TB, table string) int64 {
			t.Helper()
			var n int64
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "`+table+`"`).Scan(&n); err != nil {
				t.Fatalf("count %s: %v", table, err)
			}
			return n
		},
	}
}

func TestConformance(t *testing.T) {
	ordersvctest.Run(t, setup)
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	driver, store := open(t)
	// The orders migrations build on the outbox's tables.
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	status, err := store.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 2 || status.Pending() != 2 || status[0].Version != 1 || status[0].Name != "00001_orders.sql" {
		t.Fatalf("before Migrate: %v", status)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	status, err = store.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 2 || status.Pending() != 0 || !status[1].Applied() || !strings.Contains(status.String(), "00002_order_event_sequence.sql") {
		t.Fatalf("after Migrate: %v", status)
	}
	rows, err := driver.DB().QueryContext(ctx, `SELECT name FROM sqlite_schema
		WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '%outbox%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{ordersvc.MigrationTable, "order_idempotency_keys", "order_line_items", "order_status_transitions", "orders"}
	if strings.Join(tables, ",") != strings.Join(want, ",") {
		t.Fatalf("tables = %v, want %v", tables, want)
	}
}

func TestUpgradeGoesOnFromTheOutboxCounter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	driver, store := open(t)
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db := driver.DB()
	client := outbox.NewClient[*sql.Tx](driver)
	ordersvctest.RunUpgrade(t, ordersvctest.Upgrade{
		Harness:    harness(db, store),
		Migrations: store,
		Enqueue:    client.Enqueue,
		Publish: func(t testing.TB, id uuid.UUID) {
			if _, err := db.ExecContext(ctx, `DELETE FROM order_outbox WHERE aggregate_type = 'order' AND aggregate_id = ?1`, id.String()); err != nil {
				t.Fatal(err)
			}
		},
		InsertFirstSchemaOrder: func(t testing.TB, id uuid.UUID) {
			err := driver.WithTx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, customer_id, currency, status, total_amount, version, created_at, updated_at)
					VALUES (?1, 'c', 'EUR', 'pending', 1999, 1, 0, 0)`, id.String()); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, `INSERT INTO order_line_items (id, order_id, line_no, product_id, product_type, quantity, unit_price, status)
					VALUES (?1, ?2, 0, 'p', 'physical', 1, 1999, 'pending')`, uuid.NewString(), id.String())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		},
	})
}

func BenchmarkCreateOrder(b *testing.B) {
	ordersvctest.BenchmarkCreateOrder(b, setup(b))
}

func BenchmarkLifecycle(b *testing.B) {
	ordersvctest.BenchmarkLifecycle(b, setup(b))
}

func TestAuditedEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	driver, store := open(t)
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ordersvctest.RunAuditedEvents(t, harness(driver.DB(), store), func(t testing.TB, orderID string) {
		if _, err := driver.DB().ExecContext(ctx, "DELETE FROM order_outbox WHERE aggregate_id = ?", orderID); err != nil {
			t.Fatal(err)
		}
	})
}
