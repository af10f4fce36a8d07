package pgorders_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/ordersvctest"
	"github.com/heraldhq/herald/internal/ordersvc/pgorders"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newPool returns a pool on a fresh schema, large enough for the suite's
// 20 concurrent requests and the benchmark's 16 goroutines.
func newPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	url, schema := testdb.PostgresSchema(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, schema
}

// setup returns a harness on a fresh, migrated schema.
func setup(t testing.TB) ordersvctest.Harness {
	t.Helper()
	ctx := context.Background()
	pool, _ := newPool(t)
	// As herald serve runs it: the orders' outbox, the wake-up sent after each commit.
	driver, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	store := pgorders.New(pool, outbox.NewClient[pgx.Tx](driver))
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return harness(pool, store)
}

func TestAuditedEvents(t *testing.T) {
	t.Parallel()
	h := setup(t)
	pool := h.Store.(*pgorders.Store).Pool()
	ordersvctest.RunAuditedEvents(t, h, func(t testing.TB, orderID string) {
		if _, err := pool.Exec(context.Background(), "DELETE FROM order_outbox WHERE aggregate_id = $1", orderID); err != nil {
			t.Fatal(err)
		}
	})
}

// harness is the suite's view of store's database.
func harness(pool *pgxpool.Pool, store *pgorders.Store) ordersvctest.Harness {
	ctx := context.Background()
	return ordersvctest.Harness{
		Store: store,
		Outbox: func(t testing.TB, orderID uuid.UUID) []ordersvctest.OutboxEvent {
			t.Helper()
			rows, _ := pool.Query(ctx, `SELECT id, aggregate_type, aggregate_id, event_type, payload, headers, sequence
				FROM order_outbox WHERE aggregate_type = 'order' AND aggregate_id = $1 ORDER BY sequence`, orderID.String())
			evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ordersvctest.OutboxEvent, error) {
				var (
					e       ordersvctest.OutboxEvent
					payload []byte
				)
				err := row.Scan(&e.ID, &e.AggregateType, &e.AggregateID, &e.Type, &payload, &e.Headers, &e.Sequence)
				e.Payload = json.RawMessage(payload)
				return e, err
			})
			if err != nil {
				t.Fatalf("read outbox: %v", err)
			}
			return evs
		},
		Count: func(t testing.TB, table string) int64 {
			t.Helper()
			var n int64
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
				t.Fatalf("count %s: %v", table, err)
			}
			return n
		},
	}
}

func TestConformance(t *testing.T) {
	ordersvctest.Run(t, setup)
}

// migratedOutbox returns the outbox driver on a fresh schema whose outbox
// tables, which the orders migrations build on, are migrated.
func migratedOutbox(t *testing.T) (*pgxpool.Pool, *pgstore.Driver) {
	t.Helper()
	pool, _ := newPool(t)
	driver, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	if err := driver.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pool, driver
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := migratedOutbox(t)
	store := pgorders.New(pool, nil)

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
	var tables []string
	rows, _ := pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name NOT LIKE '%outbox%' ORDER BY table_name`)
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
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
	pool, driver := migratedOutbox(t)
	client := outbox.NewClient[pgx.Tx](driver)
	store := pgorders.New(pool, client)
	ordersvctest.RunUpgrade(t, ordersvctest.Upgrade{
		Harness:    harness(pool, store),
		Migrations: store,
		Enqueue:    client.Enqueue,
		Publish: func(t testing.TB, id uuid.UUID) {
			if _, err := pool.Exec(ctx, `DELETE FROM order_outbox WHERE aggregate_type = 'order' AND aggregate_id = $1`, id.String()); err != nil {
				t.Fatal(err)
			}
		},
		InsertFirstSchemaOrder: func(t testing.TB, id uuid.UUID) {
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO orders (id, customer_id, currency, status, total_amount, version, created_at, updated_at)
					VALUES ($1, 'c', 'EUR', 'pending', 1999, 1, now(), now())`, id); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO order_line_items (id, order_id, line_no, product_id, product_type, quantity, unit_price, status)
					VALUES ($1, $2, 0, 'p', 'physical', 1, 1999, 'pending')`, uuid.New(), id)
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
