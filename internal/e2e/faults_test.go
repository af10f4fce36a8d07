package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/testdb"
)

// Faults an adversarial run found, replayed against the binary so that the
// next run starts where that one ended.

// A password in --db, in any form pgx accepts, never reaches the output of
// a command that cannot reach the database (a closed port on 127.0.0.1).
func TestBinaryHidesDatabasePasswords(t *testing.T) {
	t.Parallel()
	for _, db := range []string{
		"postgres://u@127.0.0.1:1/db?password=SECRET",
		"postgres://u:SECRET@127.0.0.1:1/db?sslpassword=SECRET",
		"host=127.0.0.1 port=1 user=u dbname=db password=SECRET",
		"host=127.0.0.1 port=1 user=u dbname=db password='SE CRET'",
	} {
		p := startHeraldEnv(t, []string{"HERALD_DATA_DIR=" + t.TempDir()}, "migrate", "--db", db)
		select {
		case <-p.done:
		case <-time.After(stopLimit):
			t.Fatalf("herald migrate --db %q did not exit", db)
		}
		out := p.stderr.String()
		if code := p.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(out, "cannot connect to PostgreSQL") {
			t.Errorf("herald migrate --db %q: exit %d:\n%s", db, code, out)
		}
		if strings.Contains(out, "CRET") {
			t.Errorf("herald migrate --db %q shows the password:\n%s", db, out)
		}
	}
}

// herald serve on PostgreSQL while an operator terminates its connections
// again and again (pg_terminate_backend): every write answers 201 or 503
// with Retry-After, never 500; a 503 wrote nothing unless it says the
// outcome is unknown; and Herald is ready again once the terminations stop.
func TestServeSurvivesTerminatedConnections(t *testing.T) {
	t.Parallel()
	dbURL, schema := testdb.PostgresSchema(t)
	dbURL += "&application_name=" + schema
	httpAddr := "127.0.0.1:" + freePort(t)
	p := startHerald(t, "serve",
		"--db", dbURL,
		"--broker", "log",
		"--data-dir", t.TempDir(),
		"--http-addr", httpAddr,
		"--poll-interval", "100ms",
	)
	base := "http://" + httpAddr
	client := newClient(t)
	p.waitReady(t, client, base)

	ctx := t.Context()
	admin, err := pgx.Connect(ctx, testdb.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(context.WithoutCancel(ctx)) }()

	var (
		created, unavailable, unknown, killed atomic.Int64
		stop                                  = make(chan struct{})
		killer, clients                       sync.WaitGroup
	)
	killer.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			var n int64
			if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1`, schema).Scan(&n); err != nil {
				t.Error(err)
				return
			}
			killed.Add(n)
		}
	})
	body := []byte(`{"customer_id":"c-1","currency":"EUR","line_items":[{"product_id":"p-1","product_type":"physical","quantity":1,"unit_price":100}]}`)
	for range 6 {
		clients.Go(func() {
			for range 25 {
				status, header, data := post(t, client, base+"/api/v1/orders", body)
				switch {
				case status == http.StatusCreated:
					created.Add(1)
				case status == http.StatusServiceUnavailable && header.Get("Retry-After") != "":
					if strings.Contains(string(data), "may or may not") {
						unknown.Add(1)
					} else {
						unavailable.Add(1)
					}
				default:
					t.Errorf("POST /api/v1/orders: %d (Retry-After %q): %s", status, header.Get("Retry-After"), data)
				}
			}
		})
	}
	clients.Wait()
	close(stop)
	killer.Wait()
	p.waitReady(t, client, base)

	var n int64
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "orders"}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d server processes terminated; %d created, %d unavailable, %d of unknown outcome, %d stored",
		killed.Load(), created.Load(), unavailable.Load(), unknown.Load(), n)
	if killed.Load() == 0 {
		t.Error("no connection was terminated")
	}
	if n < created.Load() || n > created.Load()+unknown.Load() {
		t.Errorf("%d orders stored: %d created, and at most %d more of unknown outcome", n, created.Load(), unknown.Load())
	}
	if out := p.stderr.String(); strings.Contains(out, "panic") {
		t.Errorf("herald panicked:\n%s", out)
	}
	p.terminate(t)
}

// post sends body and returns the status, headers and body of the answer.
func post(t *testing.T, client *http.Client, url string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil, nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", url, err)
		return 0, nil, nil
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	var p struct{ Type string }
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &p); err != nil {
			t.Errorf("POST %s: %d with body %s", url, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, resp.Header, data
}
