package httpapi

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/order"
)

// unreadBody is a request body that counts its reads and has nothing to give.
type unreadBody struct{ reads atomic.Int64 }

func (u *unreadBody) Read([]byte) (int, error) {
	u.reads.Add(1)
	return 0, io.ErrUnexpectedEOF
}

// A body declared over the limit is refused from its Content-Length, on
// every route, before a byte of it is read.
func TestDeclaredBodyTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := b.state(t)
	id := newUUID(t)
	for _, path := range []string{
		"/api/v1/orders",
		"/api/v1/orders/" + id.String() + "/payment-confirmation",
		"/api/v1/orders/" + id.String() + "/transitions",
		"/api/v1/outbox/dlq/replay",
		"/no/such/route",
	} {
		body := &unreadBody{}
		hr := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, body)
		hr.ContentLength = MaxBodyBytes + 1
		hr.Header.Set("Content-Type", "application/json")
		r := b.serve(hr)
		p := r.problem(t, http.StatusRequestEntityTooLarge, eTooLarge, path)
		if p.Detail != fmt.Sprintf("The request body exceeds %d bytes.", MaxBodyBytes) {
			t.Errorf("%s: detail %q", path, p.Detail)
		}
		if n := body.reads.Load(); n != 0 {
			t.Errorf("%s: the body was read %d times before the refusal", path, n)
		}
		if r.Header.Get("Connection") != "close" {
			t.Errorf("%s: the connection of the unread body stays open", path)
		}
	}
	b.unchanged(t, before)
}

// rawExchange sends head (and no more) on a fresh connection to ts and
// reads the response.
func rawExchange(t *testing.T, ts *httptest.Server, head string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	// A net against a hang, not a speed check: without the refusal from
	// the headers the server would wait for the body forever.
	if err := conn.SetDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// Over the wire, a client that declares a body and never sends it gets
// its refusal at once: 413 for a large one, 415 for a compressed one.
func TestBodyNeverSentIsRefusedOverTheWire(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ts := httptest.NewServer(b.srv) // no read timeout: a read of the body would wait forever
	t.Cleanup(ts.Close)
	const path = "/api/v1/orders"

	resp, data := rawExchange(t, ts, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n"+ //nolint:bodyclose // rawExchange reads and closes the body
		"Content-Length: %d\r\n\r\n{", path, 2*MaxBodyBytes))
	response{Code: resp.StatusCode, Header: resp.Header, Body: data}.problem(t, http.StatusRequestEntityTooLarge, eTooLarge, path)
	if !resp.Close {
		t.Error("413: the connection stays open")
	}

	resp, data = rawExchange(t, ts, "POST "+path+" HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n"+ //nolint:bodyclose // rawExchange reads and closes the body
		"Content-Encoding: gzip\r\nContent-Length: 100\r\n\r\n")
	response{Code: resp.StatusCode, Header: resp.Header, Body: data}.problem(t, http.StatusUnsupportedMediaType, eUnsupportedType, path)
	if resp.Header.Get("Accept-Encoding") != SupportedContentEncoding {
		t.Errorf("415: Accept-Encoding %q", resp.Header.Get("Accept-Encoding"))
	}
}

func gzipped(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A compressed body is refused with 415 naming identity, the only
// supported coding, instead of a 400 for its binary bytes.
func TestContentEncodingRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/orders"
	gz := gzipped(t, createBody)
	for _, tt := range []struct {
		encoding []string // one Content-Encoding header each
		coding   string   // the one the detail names
	}{
		{[]string{"gzip"}, "gzip"},
		{[]string{"GZIP"}, "GZIP"},
		{[]string{"x-gzip"}, "x-gzip"},
		{[]string{"br"}, "br"},
		{[]string{"deflate"}, "deflate"},
		{[]string{"zstd"}, "zstd"},
		{[]string{"identity, gzip"}, "gzip"},
		{[]string{"identity", "gzip"}, "gzip"},
		{[]string{strings.Repeat("z", 300)}, strings.Repeat("z", 40) + "…"},
	} {
		before := b.state(t)
		var headers []string
		for _, e := range tt.encoding {
			headers = append(headers, "Content-Encoding", e)
		}
		r := b.do(t, req{method: "POST", path: path, body: gz, headers: headers})
		p := r.problem(t, http.StatusUnsupportedMediaType, eUnsupportedType, path)
		want := "Content-Encoding " + tt.coding + " is not supported; send the body uncompressed (Content-Encoding identity, or none)."
		if p.Detail != want {
			t.Errorf("Content-Encoding %q: detail %q, want %q", tt.encoding, p.Detail, want)
		}
		if got := r.Header.Get("Accept-Encoding"); got != "identity" {
			t.Errorf("Content-Encoding %q: Accept-Encoding %q, want identity", tt.encoding, got)
		}
		b.unchanged(t, before)
	}

	// Of unknown length (chunked) too.
	hr := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, bytes.NewReader(gz))
	hr.ContentLength = -1
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Content-Encoding", "gzip")
	b.serve(hr).problem(t, http.StatusUnsupportedMediaType, eUnsupportedType, path)

	// identity is no coding at all; a request without a body has nothing
	// encoded.
	for _, enc := range []string{"identity", "Identity", " identity "} {
		if r := b.do(t, req{method: "POST", path: path, body: createBody, headers: []string{"Content-Encoding", enc}}); r.Code != http.StatusCreated {
			t.Errorf("Content-Encoding %q: %d %s", enc, r.Code, r.Body)
		}
	}
	if r := b.do(t, req{method: "GET", path: "/healthz", headers: []string{"Content-Encoding", "gzip"}}); r.Code != http.StatusOK {
		t.Errorf("GET without a body, with Content-Encoding gzip: %d %s", r.Code, r.Body)
	}
}

// NoMetrics leaves /metrics to the caller's own listener; the HTTP metrics
// still go to the registry.
func TestNoMetricsRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.NoMetrics = true })
	b.do(t, req{method: "GET", path: "/metrics"}).problem(t, http.StatusNotFound, order.ENOTFOUND, "/metrics")
	for _, r := range b.srv.registered {
		if strings.HasSuffix(r.pattern, " /metrics") {
			t.Errorf("%s is registered", r.pattern)
		}
	}
	mfs, err := b.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == MetricRequests
	}
	if !found {
		t.Errorf("%s is not on the registry", MetricRequests)
	}
}

// The OpenAPI document says what the code does with bodies it refuses
// from their headers, and where /metrics may be.
func TestOpenAPIDocumentsBodyRefusals(t *testing.T) {
	t.Parallel()
	var doc struct {
		Info       struct{ Description string } `json:"info"`
		Paths      map[string]map[string]struct{ Description string }
		Components struct {
			Responses map[string]struct {
				Description string
				Headers     map[string]struct {
					Ref string `json:"$ref"`
				}
			}
			Headers map[string]struct {
				Schema struct{ Enum []string }
			}
		}
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if d := doc.Info.Description; !strings.Contains(d, "Content-Encoding identity") || !strings.Contains(d, "413 before it is read") {
		t.Errorf("info.description does not give the body rules: %s", d)
	}
	if d := doc.Components.Responses["PayloadTooLarge"].Description; !strings.Contains(d, "Content-Length") {
		t.Errorf("PayloadTooLarge: %s", d)
	}
	unsupported := doc.Components.Responses["UnsupportedMediaType"]
	if ref := unsupported.Headers["Accept-Encoding"].Ref; ref != "#/components/headers/AcceptEncoding" {
		t.Errorf("UnsupportedMediaType: Accept-Encoding header %q", ref)
	}
	if enum := doc.Components.Headers["AcceptEncoding"].Schema.Enum; !slices.Equal(enum, []string{SupportedContentEncoding}) {
		t.Errorf("AcceptEncoding enum %q", enum)
	}
	if d := doc.Paths["/metrics"]["get"].Description; !strings.Contains(d, "--metrics-addr") || !strings.Contains(d, "5 seconds") {
		t.Errorf("GET /metrics: %s", d)
	}
}
