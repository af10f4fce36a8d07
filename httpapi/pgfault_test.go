package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/pgorders"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// pgBundle is the API on a real orders service and outbox on PostgreSQL:
// on a fresh schema, its connections named after it (application_name),
// or on a URL of the caller's.
func pgBundle(t *testing.T, url string) (*testBundle, *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	var schema string
	if url == "" {
		url, schema = testdb.PostgresSchema(t)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	if schema != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = schema
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	driver, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	store := pgorders.New(pool, outbox.NewClient[pgx.Tx](driver))
	if schema != "" {
		if err := driver.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if err := store.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b := &testBundle{logs: &syncBuffer{}}
	b.srv = newServer(Config{Orders: ordersvc.New(store, ordersvc.Config{}), Outbox: driver, Checks: []Check{{Name: "database", Required: true, Probe: pool.Ping}}})
	return b, pool
}

// terminateBackends ends the server process of every connection of pool,
// from a connection of its own, as an operator's pg_terminate_backend or a
// restart of PostgreSQL does. It returns how many it ended.
func terminateBackends(t *testing.T, pool *pgxpool.Pool) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testdb.PostgresURL())
	if err != nil {
		t.Error(err)
		return 0
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		pool.Config().ConnConfig.RuntimeParams["application_name"]).Scan(&n); err != nil {
		t.Error(err)
	}
	return n
}

// expectAvailableOr503 checks that r is want, or a 503 with Retry-After
// and the unavailable problem; it reports whether it was a 503, and
// whether that 503 says the outcome is unknown.
func expectAvailableOr503(t *testing.T, what string, r response, want int) (unavailable, unknown bool) {
	t.Helper()
	switch r.Code {
	case want:
		return false, false
	case http.StatusServiceUnavailable:
		var p Problem
		if err := json.Unmarshal(r.Body, &p); err != nil || p.Type != ProblemTypePrefix+eUnavailable {
			t.Errorf("%s: 503 with body %s", what, r.Body)
		}
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", what)
		}
		return true, strings.Contains(p.Detail, "may or may not")
	}
	t.Errorf("%s: status %d, want %d or 503; body: %s", what, r.Code, want, r.Body)
	return false, false
}

// countOrders counts the stored orders. The pool may still hold
// connections whose server process was terminated: each fails once and
// leaves the pool.
func countOrders(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		n   int
		err error
	)
	for range pool.Config().MaxConns + 1 {
		if err = pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n); !pgstore.IsConnectionError(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var pgCreateBody = map[string]any{"customer_id": "c-1", "currency": "EUR", "line_items": []map[string]any{
	{"product_id": "p-1", "product_type": "physical", "quantity": 1, "unit_price": 100},
}}

// Herald's connections to PostgreSQL are terminated between requests: the
// next write succeeds (BEGIN fails on the dead connection and is made
// again on a live one), reads answer 200 or 503 with Retry-After, never
// 500.
func TestPostgresConnectionsLostBetweenRequests(t *testing.T) {
	t.Parallel()
	b, pool := pgBundle(t, "")
	created := 0
	for round := range 5 {
		if n := terminateBackends(t, pool); round > 0 && n == 0 {
			t.Fatalf("round %d: no connection to terminate", round)
		}
		r := b.do(t, req{method: http.MethodPost, path: "/api/v1/orders", body: pgCreateBody})
		if r.Code != http.StatusCreated {
			t.Fatalf("round %d: POST after the connections were terminated: %d %s", round, r.Code, r.Body)
		}
		created++
		terminateBackends(t, pool)
		for _, path := range []string{"/api/v1/orders", "/api/v1/outbox/stats", "/api/v1/outbox/dlq"} {
			expectAvailableOr503(t, "GET "+path, b.do(t, req{method: http.MethodGet, path: path}), http.StatusOK)
		}
	}
	if n := countOrders(t, pool); n != created {
		t.Fatalf("%d orders stored, %d created", n, created)
	}
}

// Herald's connections are terminated again and again while requests run
// (the adversarial run saw 35 answers 500, 28 of them at BEGIN): every
// answer is 201 or 503 with Retry-After, and a 503 wrote nothing unless it
// says the outcome is unknown.
func TestPostgresConnectionsLostUnderLoad(t *testing.T) {
	t.Parallel()
	b, pool := pgBundle(t, "")
	var (
		created, unavailable, unknown atomic.Int64
		stop                          = make(chan struct{})
		wg                            sync.WaitGroup
		killed                        atomic.Int64
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				killed.Add(int64(terminateBackends(t, pool)))
			}
		}
	})
	var clients sync.WaitGroup
	for c := range 8 {
		clients.Go(func() {
			for i := range 40 {
				r := b.do(t, req{method: http.MethodPost, path: "/api/v1/orders", body: pgCreateBody})
				was503, wasUnknown := expectAvailableOr503(t, "POST /api/v1/orders", r, http.StatusCreated)
				switch {
				case wasUnknown:
					unknown.Add(1)
				case was503:
					unavailable.Add(1)
				case r.Code == http.StatusCreated:
					created.Add(1)
				}
				if i%8 == c%8 {
					expectAvailableOr503(t, "GET /api/v1/orders", b.do(t, req{method: http.MethodGet, path: "/api/v1/orders?limit=5"}), http.StatusOK)
				}
			}
		})
	}
	clients.Wait()
	close(stop)
	wg.Wait()
	n := int64(countOrders(t, pool))
	t.Logf("%d server processes terminated; %d created, %d unavailable, %d of unknown outcome, %d stored",
		killed.Load(), created.Load(), unavailable.Load(), unknown.Load(), n)
	if killed.Load() == 0 {
		t.Fatal("no connection was terminated")
	}
	if n < created.Load() || n > created.Load()+unknown.Load() {
		t.Fatalf("%d orders stored: %d created, and at most %d more of unknown outcome", n, created.Load(), unknown.Load())
	}
}

// A database nothing listens for (a closed port on 127.0.0.1): every route
// that needs it answers 503 with Retry-After, /readyz too.
func TestPostgresUnreachableIs503(t *testing.T) {
	t.Parallel()
	b, _ := pgBundle(t, "postgres://u@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	for _, r := range []req{
		{method: http.MethodPost, path: "/api/v1/orders", body: pgCreateBody},
		{method: http.MethodGet, path: "/api/v1/orders"},
		{method: http.MethodGet, path: "/api/v1/orders/0190b3c4-7c8e-7a6b-9d3e-2f1a0b4c5d6e"},
		{method: http.MethodGet, path: "/api/v1/orders/0190b3c4-7c8e-7a6b-9d3e-2f1a0b4c5d6e/transitions"},
		{method: http.MethodPost, path: "/api/v1/orders/0190b3c4-7c8e-7a6b-9d3e-2f1a0b4c5d6e/transitions", body: map[string]any{"to": "cancelled", "reason": "r"}},
		{method: http.MethodGet, path: "/api/v1/outbox/stats"},
		{method: http.MethodGet, path: "/api/v1/outbox/dlq"},
		{method: http.MethodGet, path: "/api/v1/outbox/dlq/1"},
		{method: http.MethodPost, path: "/api/v1/outbox/dlq/1/replay"},
		{method: http.MethodGet, path: "/api/v1/outbox/health"},
	} {
		resp := b.do(t, r)
		p := resp.problem(t, http.StatusServiceUnavailable, eUnavailable, strings.SplitN(r.path, "?", 2)[0])
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", r.method, r.path)
		}
		if !strings.Contains(p.Detail, "nothing was written") {
			t.Errorf("%s %s: detail %q", r.method, r.path, p.Detail)
		}
	}
	// /readyz lists the dependency's state rather than a problem.
	resp := b.do(t, req{method: http.MethodGet, path: "/readyz"})
	var ready ReadyResponse
	resp.decode(t, http.StatusServiceUnavailable, &ready)
	if ready.Status != "not_ready" || len(ready.Checks) != 1 || ready.Checks[0].Status != "down" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("/readyz: %+v, Retry-After %q", ready, resp.Header.Get("Retry-After"))
	}
}
