package app_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/app"
)

// safetyDeadline bounds a read that should answer at once: a net against a
// hang, not a speed check.
const safetyDeadline = 2 * time.Minute

// startApp starts Herald's API on cfg and shuts it down at the end of the
// test.
func startApp(t *testing.T, cfg app.Config) *app.App {
	t.Helper()
	a, err := app.Start(context.Background(), cfg, app.Options{HTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return a
}

func newHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: safetyDeadline}
}

// get sends GET url and returns the status and the body.
func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// dial opens a TCP connection to the API of a, closed at the end of the test.
func dial(t *testing.T, a *app.App) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(a.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(safetyDeadline)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readResponse reads one response from br, with its body.
func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// With --metrics-addr, /metrics is served on its own listener only.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	cfg := testConfig(t, &lockedBuffer{})
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Logger = newLogger(&logs)
	a := startApp(t, cfg)
	if !strings.HasPrefix(a.MetricsURL(), "http://127.0.0.1:") || a.MetricsURL() == a.URL() {
		t.Fatalf("MetricsURL %q, URL %q", a.MetricsURL(), a.URL())
	}
	if !strings.Contains(logs.String(), "metrics="+a.MetricsURL()+"/metrics") {
		t.Errorf("the start-up log does not name the metrics listener:\n%s", logs.String())
	}
	client := newHTTPClient(t)
	if code, body := get(t, client, a.URL()+"/metrics"); code != http.StatusNotFound {
		t.Errorf("the API serves /metrics beside --metrics-addr: %d %s", code, body)
	}
	code, body := get(t, client, a.MetricsURL()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics on --metrics-addr: %d %s", code, body)
	}
	for _, want := range []string{"herald_outbox_pending 0\n", "herald_outbox_dlq_size 0\n", "herald_relay_published_total ",
		`herald_http_requests_total{method="GET",route="unmatched",status="404"} 1` + "\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("the metrics listener lacks %q", want)
		}
	}
	for _, path := range []string{"/api/v1/outbox/stats", "/healthz", "/"} {
		if code, _ := get(t, client, a.MetricsURL()+path); code != http.StatusNotFound {
			t.Errorf("the metrics listener serves %s: %d", path, code)
		}
	}

	// Without it, /metrics stays on the API's listener.
	b := startApp(t, testConfig(t, &lockedBuffer{}))
	if b.MetricsURL() != "" {
		t.Errorf("MetricsURL %q without --metrics-addr", b.MetricsURL())
	}
	if code, body := get(t, client, b.URL()+"/metrics"); code != http.StatusOK || !strings.Contains(body, "herald_outbox_pending 0\n") {
		t.Errorf("GET /metrics on the API: %d %s", code, body)
	}
}

func TestStartFailsOnBusyMetricsPort(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := free.Addr().String()
	_ = free.Close()

	cfg := testConfig(t, &lockedBuffer{})
	cfg.HTTPAddr = httpAddr
	cfg.MetricsAddr = busy.Addr().String()
	a, err := app.Start(context.Background(), cfg, app.Options{HTTP: true})
	if err == nil {
		_ = a.Shutdown(context.Background())
		t.Fatal("Start succeeded on a busy metrics port")
	}
	if !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("Start on a busy metrics port: %v", err)
	}
	// The API's listener was closed again.
	l, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("the API's port is still taken after the failed start: %v", err)
	}
	_ = l.Close()
}

func TestValidateListeners(t *testing.T) {
	t.Parallel()
	bad := map[string]app.Config{
		`--metrics-addr "9090" is not a host:port`: {MetricsAddr: "9090"},
		"is also --http-addr":                      {HTTPAddr: "127.0.0.1:8080", MetricsAddr: "127.0.0.1:8080"},
		"--max-connections must be at least 1":     {MaxConnections: -1},
	}
	for want, cfg := range bad {
		if err := cfg.Validate(); !app.IsUsageError(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want a usage error with %q", cfg, err, want)
		}
	}
	for _, cfg := range []app.Config{
		{MetricsAddr: "127.0.0.1:9090", MaxConnections: 1},
		{HTTPAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0"},
		// The metrics listener needs no token on another interface: it
		// serves figures only, and is meant for a Prometheus elsewhere.
		{MetricsAddr: "0.0.0.0:9090"},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", cfg, err)
		}
	}
}

// With a cap of 2 connections, a third is not served while two are open,
// and is served once one of them closes.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, &lockedBuffer{})
	cfg.MaxConnections = 2
	a := startApp(t, cfg)
	const request = "GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n"

	var held []net.Conn
	for i := range 2 {
		conn := dial(t, a)
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatal(err)
		}
		if resp, body := readResponse(t, bufio.NewReader(conn)); resp.StatusCode != http.StatusOK { //nolint:bodyclose // readResponse reads and closes the body
			t.Fatalf("connection %d: %d %s", i, resp.StatusCode, body)
		}
		held = append(held, conn) // kept alive, idle: it holds its place
	}

	third := dial(t, a)
	if _, err := io.WriteString(third, request); err != nil {
		t.Fatal(err)
	}
	// Not a speed check: with the cap the third connection cannot be served
	// while the two are open, however long this waits; without it, it is
	// served at once.
	if err := third.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	n, err := third.Read(one[:])
	if ne, ok := errors.AsType[net.Error](err); n > 0 || !ok || !ne.Timeout() {
		t.Fatalf("a third connection was served beside two open ones (read %d bytes, %v)", n, err)
	}

	_ = held[0].Close()
	if err := third.SetReadDeadline(time.Now().Add(safetyDeadline)); err != nil {
		t.Fatal(err)
	}
	if resp, body := readResponse(t, bufio.NewReader(third)); resp.StatusCode != http.StatusOK { //nolint:bodyclose // readResponse reads and closes the body
		t.Fatalf("the third connection, once one closed: %d %s", resp.StatusCode, body)
	}
}

// A body declared over the limit and never sent is refused at once with
// 413, not with a 400 at the read timeout; a compressed body gets 415.
func TestBodyRefusedFromItsHeaders(t *testing.T) {
	t.Parallel()
	a := startApp(t, testConfig(t, &lockedBuffer{}))

	conn := dial(t, a)
	_, err := fmt.Fprintf(conn, "POST /api/v1/orders HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{",
		httpapi.MaxBodyBytes+1)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, bufio.NewReader(conn)) //nolint:bodyclose // readResponse reads and closes the body
	var p httpapi.Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge ||
		p.Type != httpapi.ProblemTypePrefix+"payload_too_large" {
		t.Fatalf("a body declared over %d bytes: %d %s", httpapi.MaxBodyBytes, resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("the connection of an unread body stays open")
	}

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, `{"customer_id":"c","currency":"EUR","line_items":[]}`)
	_ = zw.Close()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, a.URL()+"/api/v1/orders", &gz)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	resp2, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp2.Body)
	_ = resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnsupportedMediaType || resp2.Header.Get("Accept-Encoding") != "identity" ||
		!strings.Contains(string(data), "Content-Encoding gzip is not supported") {
		t.Errorf("a gzip body: %d Accept-Encoding %q %s", resp2.StatusCode, resp2.Header.Get("Accept-Encoding"), data)
	}
}
