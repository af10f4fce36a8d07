package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// TestMalformedBody covers every kind of body that is refused with 400, on
// the create route; nothing may be written.
func TestMalformedBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/orders"
	for _, tc := range []struct {
		name, body, detail string
	}{
		{"empty", "", "The request body is empty; a JSON object is required."},
		{"white space", " \n\t ", "The request body is empty; a JSON object is required."},
		{"not JSON", "customer=c-1", "The request body must be a JSON object."},
		{"array", `[{"customer_id":"c"}]`, "The request body must be a JSON object."},
		{"string", `"hello"`, "The request body must be a JSON object."},
		{"null", `null`, "The request body must be a JSON object."},
		{"syntax error", `{"customer_id": "c-1",}`, "The request body is not valid JSON: invalid character '}' looking for beginning of object key string (at byte 23)."},
		{"truncated", `{"customer_id": "c-1"`, "The request body is not valid JSON: it ends early."},
		{"trailing object", `{"customer_id":"c-1","currency":"EUR","line_items":[]} {}`, "The request body has data after its JSON object."},
		{"trailing garbage", `{"customer_id":"c-1"}x`, "The request body has data after its JSON object."},
		{"unknown field", `{"customer_id":"c-1","total_amount":5}`, `Unknown field "total_amount".`},
		{"unknown nested field", `{"customer_id":"c-1","line_items":[{"product_id":"p","colour":"red"}]}`, `Unknown field "colour".`},
		{"key in another case", `{"Customer_ID":"c-1","currency":"EUR"}`, `Unknown field "Customer_ID".`},
		{"nested key in another case", `{"customer_id":"c-1","currency":"EUR","line_items":[{"product_id":"p","Quantity":1}]}`, `Unknown field "line_items[0].Quantity".`},
		{"duplicate key", `{"customer_id":"c-1","customer_id":"c-2"}`, `Field "customer_id" appears twice.`},
		{"string for integer", `{"line_items":[{"quantity":"2"}]}`, "Field line_items.quantity must be an integer, not string."},
		{"fraction for integer", `{"line_items":[{"quantity":1.5}]}`, "Field line_items.quantity must be an integer, not number 1.5."},
		{"integer overflow", `{"line_items":[{"unit_price":99999999999999999999}]}`, "Field line_items.unit_price must be an integer, not number 99999999999999999999."},
		{"number for string", `{"customer_id":42}`, "Field customer_id must be a string, not number."},
		{"object for array", `{"line_items":{}}`, "Field line_items must be an array, not object."},
		{"invalid UTF-8", "{\"customer_id\":\"c-\xff\"}", "The request body is not valid UTF-8."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.state(t)
			p := b.do(t, req{method: "POST", path: path, body: tc.body}).problem(t, 400, eBadRequest, path)
			if p.Detail != tc.detail {
				t.Errorf("detail %q\nwant   %q", p.Detail, tc.detail)
			}
			b.unchanged(t, before)
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/orders"
	big := `{"customer_id":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	before := b.state(t)

	p := b.do(t, req{method: "POST", path: path, body: big}).problem(t, 413, eTooLarge, path)
	if p.Detail != "The request body exceeds 1048576 bytes." {
		t.Errorf("detail %q", p.Detail)
	}

	// Of unknown length (chunked): refused while reading.
	hr := httptest.NewRequestWithContext(context.Background(), "POST", path, strings.NewReader(big))
	hr.ContentLength = -1
	hr.Header.Set("Content-Type", "application/json")
	b.serve(hr).problem(t, 413, eTooLarge, path)

	// Exactly at the limit, the body is read (and refused for what it says).
	exact := `{"customer_id":"` + strings.Repeat("a", MaxBodyBytes-len(`{"customer_id":""}`)) + `"}`
	if len(exact) != MaxBodyBytes {
		t.Fatalf("exact body is %d bytes", len(exact))
	}
	b.do(t, req{method: "POST", path: path, body: exact}).problem(t, 422, order.EINVALID, path)
	b.unchanged(t, before)
}

func TestUnsupportedMediaType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/orders"
	for ct, detail := range map[string]string{
		"text/plain":                        "The request body must be application/json; Content-Type is text/plain.",
		"application/x-www-form-urlencoded": "The request body must be application/json; Content-Type is application/x-www-form-urlencoded.",
		"":                                  "The request body must be application/json; Content-Type is none.",
		"application/json;;":                "The request body must be application/json; Content-Type is application/json;;.",
		"application/xml+json-ish":          "The request body must be application/json; Content-Type is application/xml+json-ish.",
	} {
		before := b.state(t)
		p := b.do(t, req{method: "POST", path: path, body: createBody, headers: []string{"Content-Type", ct}}).
			problem(t, 415, eUnsupportedType, path)
		if p.Detail != detail {
			t.Errorf("Content-Type %q: detail %q, want %q", ct, p.Detail, detail)
		}
		b.unchanged(t, before)
	}
	// Of unknown length, checked once the body is read.
	hr := httptest.NewRequestWithContext(context.Background(), "POST", path, strings.NewReader(`{}`))
	hr.ContentLength = -1
	hr.Header.Set("Content-Type", "text/plain")
	b.serve(hr).problem(t, 415, eUnsupportedType, path)

	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "application/vnd.herald+json"} {
		r := b.do(t, req{method: "POST", path: path, body: createBody, headers: []string{"Content-Type", ct}})
		if r.Code != 201 {
			t.Errorf("Content-Type %q: %d %s", ct, r.Code, r.Body)
		}
	}
}

func TestRouteNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, withTokens(apiToken, adminToken))
	for _, path := range []string{"/", "/api/v1/order", "/api/v1/orders/", "/api/v2/orders", "/api/v1/outbox/dlq/1/replay/x"} {
		p := b.do(t, req{method: "GET", path: path}).problem(t, 404, order.ENOTFOUND, path)
		if p.Detail != "No route matches "+path+"." {
			t.Errorf("%s: detail %q", path, p.Detail)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/api/v1/orders", "GET, HEAD, POST"},
		{"DELETE", "/api/v1/orders/0190a6a4-6c1e-7d1e-9f3e-1b2c3d4e5f60", "GET, HEAD"},
		{"GET", "/api/v1/orders/0190a6a4-6c1e-7d1e-9f3e-1b2c3d4e5f60/payment-confirmation", "POST"},
		{"PATCH", "/api/v1/orders/x/transitions", "GET, HEAD, POST"},
		{"GET", "/api/v1/orders/x/line-items/y/transitions", "POST"},
		{"POST", "/api/v1/outbox/stats", "GET, HEAD"},
		{"PUT", "/api/v1/outbox/dlq/5", "DELETE, GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		before := b.state(t)
		r := b.do(t, req{method: tc.method, path: tc.path, body: createBody})
		p := r.problem(t, 405, eMethodNotAllowed, tc.path)
		if got := r.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if want := tc.method + " is not allowed on " + tc.path + "; allowed: " + tc.allow + "."; p.Detail != want {
			t.Errorf("detail %q, want %q", p.Detail, want)
		}
		b.unchanged(t, before)
	}
}

func TestPathIDNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.createOrder(t, createBody)
	before := b.state(t)
	for _, tc := range []struct{ method, path, detail string }{
		{"GET", "/api/v1/orders/not-a-uuid", `No order has id "not-a-uuid".`},
		{"GET", "/api/v1/orders/" + strings.ReplaceAll(o.ID.String(), "-", ""), `No order has id "` + strings.ReplaceAll(o.ID.String(), "-", "") + `".`},
		{"GET", "/api/v1/orders/{" + o.ID.String() + "}", `No order has id "{` + o.ID.String() + `}".`},
		{"GET", "/api/v1/orders/123/transitions", `No order has id "123".`},
		{"POST", "/api/v1/orders/123/transitions", `No order has id "123".`},
		{"POST", "/api/v1/orders/123/payment-confirmation", `No order has id "123".`},
		{"POST", orderPath(o) + "/line-items/abc/transitions", `No line item has id "abc".`},
		{"GET", "/api/v1/outbox/dlq/abc", `No dead letter has id "abc".`},
		{"GET", "/api/v1/outbox/dlq/0", `No dead letter has id "0".`},
		{"GET", "/api/v1/outbox/dlq/-1", `No dead letter has id "-1".`},
		{"GET", "/api/v1/outbox/dlq/01", `No dead letter has id "01".`},
		{"GET", "/api/v1/outbox/dlq/99999999999999999999", `No dead letter has id "99999999999999999999".`},
		{"DELETE", "/api/v1/outbox/dlq/x", `No dead letter has id "x".`},
		// GET on the replay-all path is the dead letter "replay".
		{"GET", "/api/v1/outbox/dlq/replay", `No dead letter has id "replay".`},
		{"POST", "/api/v1/outbox/dlq/x/replay", `No dead letter has id "x".`},
	} {
		var body any
		if tc.method == "POST" {
			body = map[string]any{"to": "cancelled"}
		}
		p := b.do(t, req{method: tc.method, path: tc.path, body: body}).problem(t, 404, order.ENOTFOUND, tc.path)
		if p.Detail != tc.detail {
			t.Errorf("%s %s: detail %q, want %q", tc.method, tc.path, p.Detail, tc.detail)
		}
	}
	b.unchanged(t, before)
}

func TestInternalErrorIsHidden(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.createOrder(t, createBody)
	// Break the database under the real service.
	if _, err := b.driver.DB().Exec(`DROP TABLE order_line_items`); err != nil {
		t.Fatal(err)
	}
	path := orderPath(o)
	r := b.do(t, req{method: "GET", path: path})
	p := r.problem(t, 500, order.EINTERNAL, path)
	if p.Detail != "Internal error." {
		t.Errorf("detail %q", p.Detail)
	}
	if bytes.Contains(r.Body, []byte("order_line_items")) || bytes.Contains(r.Body, []byte("sqlite")) {
		t.Errorf("the response leaks the internal error: %s", r.Body)
	}
	logs := b.logs.String()
	if !strings.Contains(logs, `"msg":"http: internal error"`) || !strings.Contains(logs, "no such table: order_line_items") {
		t.Errorf("the internal error is not logged:\n%s", logs)
	}
	if !strings.Contains(logs, `"request_id":"`+p.RequestID+`"`) {
		t.Errorf("the log does not carry request id %s", p.RequestID)
	}
}

// panicOnGet is the real service with a GetOrder that panics with v.
type panicOnGet struct {
	order.Service
	v any
}

func (p panicOnGet) GetOrder(context.Context, uuid.UUID) (order.Order, error) { panic(p.v) }

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.cfg.Orders = panicOnGet{b.svc, "secret panic value"}
	const path = "/api/v1/orders/0190a6a4-6c1e-7d1e-9f3e-1b2c3d4e5f60"
	r := b.do(t, req{method: "GET", path: path})
	p := r.problem(t, 500, order.EINTERNAL, path)
	if p.Detail != "Internal error." || bytes.Contains(r.Body, []byte("secret")) {
		t.Errorf("panic leaked or detail wrong: %s", r.Body)
	}
	logs := b.logs.String()
	if !strings.Contains(logs, `"msg":"http: panic serving request"`) || !strings.Contains(logs, "secret panic value") {
		t.Errorf("panic not logged:\n%s", logs)
	}
	if !strings.Contains(logs, `"msg":"http request"`) || !strings.Contains(logs, `"status":500`) {
		t.Errorf("the access log misses the 500:\n%s", logs)
	}

	// http.ErrAbortHandler is panicked again, for net/http to handle.
	b.srv.cfg.Orders = panicOnGet{b.svc, http.ErrAbortHandler}
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler { //nolint:errorlint // the sentinel itself
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		b.do(t, req{method: "GET", path: path})
		t.Error("no panic")
	}()
}

// TestOverTheWire runs requests through a real net/http server: the
// refusal of an oversized chunked body reaches the client, and HEAD works.
func TestOverTheWire(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ts := httptest.NewServer(b.srv)
	t.Cleanup(ts.Close)
	client := ts.Client()
	t.Cleanup(client.CloseIdleConnections)

	body := io.MultiReader(strings.NewReader(`{"customer_id":"`), strings.NewReader(strings.Repeat("a", 2*MaxBodyBytes)))
	hr, err := http.NewRequestWithContext(context.Background(), http.MethodPost, ts.URL+"/api/v1/orders", body)
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	response{Code: resp.StatusCode, Header: resp.Header, Body: data}.problem(t, 413, eTooLarge, "/api/v1/orders")
	if resp.ContentLength != -1 && resp.ContentLength != int64(len(data)) {
		t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(data))
	}
	if s := b.state(t); s.Orders != 0 {
		t.Errorf("state %+v", s)
	}

	hr, err = http.NewRequestWithContext(context.Background(), http.MethodHead, ts.URL+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD /healthz: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// A database that stays locked is the server's momentary trouble, not the
// client's: 503 with Retry-After, and nothing was written.
func TestBusyDatabaseIs503(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("sqliteorders: begin: %w", fmt.Errorf("sqlitestore: no write lock after 10s: %w", outbox.ErrBusy))
	p := toProblem(err)
	if p.Status != http.StatusServiceUnavailable || !strings.HasSuffix(p.Type, eUnavailable) {
		t.Fatalf("problem %+v, want 503 %s", p, eUnavailable)
	}
	rec := httptest.NewRecorder()
	writeProblemDoc(rec, httptest.NewRequest(http.MethodPost, "/api/v1/orders", nil), p)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}
