package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/httpapi"
)

// TestServeLimits runs herald serve as an adversary finds it: /metrics on a
// listener of its own (--metrics-addr), a cap of two connections
// (HERALD_MAX_CONNECTIONS), a body declared too large and never sent, and
// a compressed body.
func TestServeLimits(t *testing.T) {
	t.Parallel()
	httpAddr := "127.0.0.1:" + freePort(t)
	metricsAddr := "127.0.0.1:" + freePort(t)
	p := startHeraldEnv(t, []string{"HERALD_MAX_CONNECTIONS=2"}, "serve",
		"--data-dir", t.TempDir(),
		"--broker", "log",
		"--http-addr", httpAddr,
		"--metrics-addr", metricsAddr,
	)
	base := "http://" + httpAddr
	// No keep-alive: an idle connection of this client would hold one of
	// the two places.
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	p.waitReady(t, client, base)
	p.waitLog(t, "metrics=http://"+metricsAddr+"/metrics")

	// /metrics is on the metrics listener only.
	if code := status(t, client, http.MethodGet, base+"/metrics", nil, nil); code != http.StatusNotFound {
		t.Errorf("GET /metrics on --http-addr: %d", code)
	}
	metrics := getText(t, client, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{"herald_outbox_pending 0\n", "herald_outbox_dlq_size 0\n", "herald_http_requests_total{"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the metrics listener lacks %q", want)
		}
	}

	// A body declared over 1 MiB and never sent: 413 at once.
	resp, body := exchange(t, httpAddr, fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: herald\r\n"+ //nolint:bodyclose // readResp reads and closes the body
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", httpapi.MaxBodyBytes+1))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "payload_too_large") {
		t.Errorf("a body declared over 1 MiB: %d %s", resp.StatusCode, body)
	}

	// A gzip body: 415 naming identity.
	code := status(t, client, http.MethodPost, base+"/api/v1/orders", strings.NewReader("\x1f\x8b\x08\x00"),
		map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"})
	if code != http.StatusUnsupportedMediaType {
		t.Errorf("a gzip body: %d", code)
	}

	// Two connections held open: a third waits until one closes.
	const request = "GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n"
	var held []net.Conn
	for range 2 {
		conn, br := dialHerald(t, httpAddr)
		if _, err := io.WriteString(conn, request); err != nil {
			t.Fatal(err)
		}
		if resp, body := readResp(t, br); resp.StatusCode != http.StatusOK { //nolint:bodyclose // readResp reads and closes the body
			t.Fatalf("held connection: %d %s", resp.StatusCode, body)
		}
		held = append(held, conn)
	}
	third, br := dialHerald(t, httpAddr)
	if _, err := io.WriteString(third, request); err != nil {
		t.Fatal(err)
	}
	// Not a speed check: with the cap the third is never served while the
	// two are open; without it, it would be served at once.
	if err := third.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := br.Peek(1); !isTimeout(err) {
		t.Fatalf("a third connection was served beside two open ones (%v)", err)
	}
	_ = held[0].Close()
	if err := third.SetReadDeadline(time.Now().Add(startLimit)); err != nil {
		t.Fatal(err)
	}
	if resp, body := readResp(t, br); resp.StatusCode != http.StatusOK { //nolint:bodyclose // readResp reads and closes the body
		t.Fatalf("the third connection, once one closed: %d %s", resp.StatusCode, body)
	}
	_ = held[1].Close()
	_ = third.Close()
	p.terminate(t)
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// status sends a request and returns its status.
func status(t *testing.T, client *http.Client, method, url string, body io.Reader, headers map[string]string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// dialHerald opens a TCP connection to addr, closed at the end of the test.
func dialHerald(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(startLimit)); err != nil { // a net against a hang
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

func readResp(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, b.String()
}

// exchange sends head alone on a fresh connection and reads the response.
func exchange(t *testing.T, addr, head string) (*http.Response, string) {
	t.Helper()
	conn, br := dialHerald(t, addr)
	defer func() { _ = conn.Close() }()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return readResp(t, br)
}
