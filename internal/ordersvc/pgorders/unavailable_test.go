package pgorders_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/pgorders"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// killing is a store whose transactions have their connection terminated
// (pg_terminate_backend) before fn's first statement, for the first kills
// runs.
type killing struct {
	*pgorders.Store
	pool  *pgxpool.Pool
	t     *testing.T
	kills int
	runs  int
}

func (k *killing) WithTx(ctx context.Context, fn func(tx ordersvc.Tx) error) error {
	return k.Store.WithTx(ctx, func(tx ordersvc.Tx) error {
		k.runs++
		if k.runs <= k.kills {
			terminateAll(k.t, k.pool)
		}
		return fn(tx)
	})
}

// terminateAll ends the server process of every connection of pool (all
// carry the schema's application_name), from a connection of its own, and
// waits until they are gone.
func terminateAll(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	app := pool.Config().ConnConfig.RuntimeParams["application_name"]
	conn, err := pgx.Connect(ctx, testdb.PostgresURL())
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app); err != nil {
		t.Error(err)
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&left); err != nil || left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d server processes left after pg_terminate_backend", left)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// killableSetup is a migrated store on a fresh schema whose connections
// carry the schema's name as application_name.
func killableSetup(t *testing.T, kills int) (*killing, *ordersvc.Service, *pgxpool.Pool) {
	t.Helper()
	url, schema := testdb.PostgresSchema(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = schema
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	driver, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	if err := driver.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	store := pgorders.New(pool, outbox.NewClient[pgx.Tx](driver))
	if err := store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	k := &killing{Store: store, pool: pool, t: t, kills: kills}
	return k, ordersvc.New(k, ordersvc.Config{}), pool
}

var createRequest = order.CreateOrder{CustomerID: "c-1", Currency: "EUR", LineItems: []order.CreateLineItem{
	{ProductID: "p-1", ProductType: order.ProductPhysical, Quantity: 2, UnitPrice: 1999},
}}

func counts(t *testing.T, pool *pgxpool.Pool) (orders, events int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range pool.Config().MaxConns + 1 { // past connections whose server process was terminated
		err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_outbox)`).Scan(&orders, &events)
		if !pgstore.IsConnectionError(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return orders, events
}

// A transaction whose connection is lost before its commit wrote nothing:
// the store runs it once more, and the request succeeds.
func TestWithTxRetriesATransactionLostBeforeCommit(t *testing.T) {
	t.Parallel()
	k, svc, pool := killableSetup(t, 1)
	o, err := svc.CreateOrder(t.Context(), createRequest, order.RequestOptions{Actor: "alice", IdempotencyKey: "k-1"})
	if err != nil {
		t.Fatalf("CreateOrder with its connection lost once: %v", err)
	}
	if k.runs != 2 {
		t.Errorf("the transaction ran %d times, want 2", k.runs)
	}
	if orders, events := counts(t, pool); orders != 1 || events != 1 {
		t.Fatalf("%d orders and %d events, want 1 and 1", orders, events)
	}
	// A change, lost once too.
	k.runs = 0
	if _, err := svc.TransitionOrder(t.Context(), o.ID, order.TransitionRequest{To: order.StatusCancelled, Reason: "test"},
		order.RequestOptions{Actor: "alice"}); err != nil {
		t.Fatalf("TransitionOrder with its connection lost once: %v", err)
	}
	got, err := svc.GetOrder(t.Context(), o.ID)
	for i := 0; errors.Is(err, outbox.ErrUnavailable) && i < 5; i++ {
		got, err = svc.GetOrder(t.Context(), o.ID) // a read is not retried: the pool may still hold dead connections
	}
	if err != nil || got.Status != order.StatusCancelled || got.Version != o.Version+1 {
		t.Fatalf("after the retried change: %+v, %v", got, err)
	}
}

// Only once: a second loss is ErrUnavailable, and nothing was written.
func TestWithTxRetriesOnlyOnce(t *testing.T) {
	t.Parallel()
	k, svc, pool := killableSetup(t, 2)
	_, err := svc.CreateOrder(t.Context(), createRequest, order.RequestOptions{Actor: "alice"})
	if !errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, outbox.ErrOutcomeUnknown) {
		t.Fatalf("CreateOrder with its connection lost twice: %v, want ErrUnavailable", err)
	}
	if k.runs != 2 {
		t.Errorf("the transaction ran %d times, want 2", k.runs)
	}
	if orders, events := counts(t, pool); orders != 0 || events != 0 {
		t.Fatalf("%d orders and %d events after a failure, want none", orders, events)
	}
}

// Reads on a database that cannot be reached are ErrUnavailable.
func TestReadsOnAClosedPortAreUnavailable(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), "postgres://u@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	driver, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	svc := ordersvc.New(pgorders.New(pool, outbox.NewClient[pgx.Tx](driver)), ordersvc.Config{})
	ctx := t.Context()
	if _, err := svc.GetOrder(ctx, [16]byte{1}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("GetOrder: %v", err)
	}
	if _, err := svc.ListOrders(ctx, order.ListFilter{}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("ListOrders: %v", err)
	}
	if _, err := svc.ListTransitions(ctx, [16]byte{1}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("ListTransitions: %v", err)
	}
	if _, err := svc.CreateOrder(ctx, createRequest, order.RequestOptions{Actor: "alice"}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("CreateOrder: %v", err)
	}
}
