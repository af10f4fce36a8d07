package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// wait bounds every wait of the test: herald starting, the events arriving.
const wait = 2 * time.Minute

// TestShipping builds herald, runs `herald serve` on its embedded defaults
// (SQLite, embedded NATS) on free loopback ports, runs the shipping consumer
// against it, and walks an order through its lifecycle over the HTTP API:
// the consumer's shipments table follows the physical line item to
// delivered and ignores the digital one.
func TestShipping(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()
	dir := t.TempDir()
	api, natsURL := startHerald(t, ctx, dir)

	consumerCtx, stopConsumer := context.WithCancel(ctx)
	dbPath := filepath.Join(dir, "shipping.db")
	consumed := make(chan error, 1)
	go func() {
		consumed <- run(consumerCtx, config{NATSURL: natsURL, DBPath: dbPath}, slog.New(slog.DiscardHandler))
	}()
	defer func() {
		stopConsumer()
		if err := <-consumed; err != nil {
			t.Errorf("the consumer: %v", err)
		}
	}()

	var o struct {
		ID        string `json:"id"`
		LineItems []struct {
			ID          string `json:"id"`
			ProductType string `json:"product_type"`
		} `json:"line_items"`
	}
	post(t, ctx, api+"/api/v1/orders", `{"customer_id":"c-42","currency":"EUR","line_items":[
		{"product_id":"book","product_type":"physical","quantity":2,"unit_price":1999},
		{"product_id":"ebook","product_type":"digital","quantity":1,"unit_price":500}]}`, &o)
	post(t, ctx, api+"/api/v1/orders/"+o.ID+"/payment-confirmation",
		`{"payment_id":"pay_1","amount":4498,"currency":"EUR"}`, nil)
	physical := ""
	for _, li := range o.LineItems {
		if li.ProductType == "physical" {
			physical = li.ID
		}
	}
	for _, to := range []string{"preparing", "ready_to_ship", "shipped", "delivered"} {
		post(t, ctx, api+"/api/v1/orders/"+o.ID+"/line-items/"+physical+"/transitions", `{"to":"`+to+`"}`, nil)
	}

	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	deadline := time.Now().Add(wait)
	for {
		var status string
		err := db.QueryRowContext(ctx, `SELECT status FROM shipments WHERE line_item_id = ?`, physical).Scan(&status)
		if err == nil && status == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shipment of %s: status %q (%v) after %v, want delivered", physical, status, err, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var shipments, paid int
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM shipments), (SELECT count(*) FROM paid_orders WHERE order_id = ?)`, o.ID).
		Scan(&shipments, &paid); err != nil {
		t.Fatal(err)
	}
	if shipments != 1 || paid != 1 {
		t.Fatalf("%d shipments and %d paid orders, want the physical item's shipment and its order", shipments, paid)
	}
}

// startHerald builds herald and starts `herald serve` with its data in dir,
// its HTTP API and embedded NATS on free loopback ports; it returns their
// addresses once herald is ready. The process is stopped (SIGTERM, to its
// pid) when the test ends.
func startHerald(t *testing.T, ctx context.Context, dir string) (api, natsURL string) {
	t.Helper()
	bin := filepath.Join(dir, "herald")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/herald")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build herald: %v\n%s", err, out)
	}
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	var logs syncBuffer
	cmd := exec.Command(bin, "serve", "--data-dir", filepath.Join(dir, "herald-data"), //nolint:gosec // the binary just built
		"--http-addr", httpAddr, "--embedded-nats-addr", natsAddr)
	cmd.Env = withoutHeraldSettings(os.Environ())
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Logf("herald serve: %v", err)
			}
		case <-time.After(wait):
			_ = cmd.Process.Kill()
			t.Errorf("herald did not stop on SIGTERM (%v)\n%s", <-exited, logs.String())
		}
	})
	api = "http://" + httpAddr
	deadline := time.Now().Add(wait)
	for {
		select {
		case err := <-exited:
			t.Fatalf("herald serve exited: %v\n%s", err, logs.String())
		default:
		}
		if ready(ctx, api+"/readyz") {
			return api, "nats://" + natsAddr
		}
		if time.Now().After(deadline) {
			t.Fatalf("herald not ready after %v\n%s", wait, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a buffer the process writes to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// withoutHeraldSettings drops HERALD_* variables, so that herald runs on
// its defaults whatever the environment says.
func withoutHeraldSettings(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "HERALD_") {
			out = append(out, kv)
		}
	}
	return out
}

func ready(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// post sends body as JSON and decodes the answer into out, unless nil.
func post(t *testing.T, ctx context.Context, url, body string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s\n%s", url, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(fmt.Errorf("POST %s: %w\n%s", url, err, b))
		}
	}
}
