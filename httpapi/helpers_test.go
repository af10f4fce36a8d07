package httpapi

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/sqliteorders"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testBundle is one API on a real orders service and outbox, on a fresh
// SQLite database.
type testBundle struct {
	srv      *server
	driver   *sqlitestore.Driver
	svc      *ordersvc.Service
	client   *outbox.Client[*sql.Tx]
	registry *prometheus.Registry
	logs     *syncBuffer
	// lastSeq numbers deadLetter's events per aggregate, as the orders
	// service numbers its own (the outbox's counter refuses orders).
	lastSeq map[string]int64
}

// setup builds the bundle; opts adjust the Config before New.
func setup(tb testing.TB, opts ...func(*Config)) *testBundle {
	tb.Helper()
	ctx := context.Background()
	driver, err := sqlitestore.Open(testdb.SQLitePath(tb), sqlitestore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		tb.Fatal(err)
	}
	if err := driver.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	client := outbox.NewClient[*sql.Tx](driver)
	store := sqliteorders.New(driver.DB(), client)
	if err := store.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := store.Close(); err != nil {
			tb.Error(err)
		}
		if err := driver.Close(); err != nil {
			tb.Error(err)
		}
	})
	b := &testBundle{
		driver:   driver,
		svc:      ordersvc.New(store, ordersvc.Config{}),
		client:   client,
		registry: prometheus.NewRegistry(),
		logs:     &syncBuffer{},
	}
	cfg := Config{
		Orders:   b.svc,
		Outbox:   driver,
		Logger:   slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: b.registry,
		Version:  "1.2.3-test",
	}
	for _, o := range opts {
		o(&cfg)
	}
	b.srv = newServer(cfg)
	return b
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// response is a recorded response.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// req is a request to send: method, path, body (a string is sent as is,
// anything else as JSON) and headers as name, value pairs. Content-Type is
// application/json unless a header sets it.
type req struct {
	method, path string
	body         any
	headers      []string
}

func (b *testBundle) do(tb testing.TB, r req) response {
	tb.Helper()
	var body io.Reader
	switch v := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(v)
	case []byte:
		body = bytes.NewReader(v)
	default:
		data, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		body = bytes.NewReader(data)
	}
	hr := httptest.NewRequestWithContext(context.Background(), r.method, r.path, body)
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(r.headers); i += 2 {
		switch name, value := r.headers[i], r.headers[i+1]; {
		case name == "Content-Type" && value == "":
			hr.Header.Del(name)
		case name == "Content-Type":
			hr.Header.Set(name, value)
		default:
			hr.Header.Add(name, value) // a name given twice is sent twice
		}
	}
	if r.headers != nil && len(r.headers)%2 != 0 {
		tb.Fatalf("odd header list %q", r.headers)
	}
	return b.serve(hr)
}

func (b *testBundle) serve(hr *http.Request) response {
	rec := httptest.NewRecorder()
	b.srv.ServeHTTP(rec, hr)
	return response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// decode asserts a JSON response with status code and decodes it into v.
func (r response) decode(tb testing.TB, code int, v any) {
	tb.Helper()
	if r.Code != code {
		tb.Fatalf("status %d, want %d; body: %s", r.Code, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("Content-Type %q, want application/json", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// problem asserts a problem document with the status and code and returns
// it. Its instance must be path.
func (r response) problem(tb testing.TB, status int, code, path string) Problem {
	tb.Helper()
	if r.Code != status {
		tb.Fatalf("status %d, want %d; body: %s", r.Code, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != ProblemContentType {
		tb.Fatalf("Content-Type %q, want %s", ct, ProblemContentType)
	}
	var p Problem
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		tb.Fatalf("decode problem %s: %v", r.Body, err)
	}
	if want := ProblemTypePrefix + code; p.Type != want {
		tb.Errorf("type %q, want %q", p.Type, want)
	}
	if p.Status != status {
		tb.Errorf("problem status %d, want %d", p.Status, status)
	}
	if p.Title != titles[code] || p.Title == "" {
		tb.Errorf("title %q, want %q", p.Title, titles[code])
	}
	if p.Detail == "" {
		tb.Error("problem has no detail")
	}
	if p.Instance != path {
		tb.Errorf("instance %q, want %q", p.Instance, path)
	}
	if p.RequestID == "" || p.RequestID != r.Header.Get("X-Request-Id") {
		tb.Errorf("request_id %q, X-Request-Id %q", p.RequestID, r.Header.Get("X-Request-Id"))
	}
	return p
}

// fields returns the problem's field errors as field → message.
func (p Problem) fields() map[string]string {
	m := make(map[string]string, len(p.Errors))
	for _, e := range p.Errors {
		m[e.Field] = e.Message
	}
	return m
}

// dbState counts the rows a request could write.
type dbState struct {
	Orders, LineItems, Transitions, Outbox, DeadLetters, OpenDeadLetters, IdempotencyKeys int64
	Versions                                                                              string
}

func (b *testBundle) state(tb testing.TB) dbState {
	tb.Helper()
	var s dbState
	db := b.driver.DB()
	for _, c := range []struct {
		dst   *int64
		query string
	}{
		{&s.Orders, `SELECT count(*) FROM orders`},
		{&s.LineItems, `SELECT count(*) FROM order_line_items`},
		{&s.Transitions, `SELECT count(*) FROM order_status_transitions`},
		{&s.Outbox, `SELECT count(*) FROM order_outbox`},
		{&s.DeadLetters, `SELECT count(*) FROM order_outbox_dlq`},
		{&s.OpenDeadLetters, `SELECT count(*) FROM order_outbox_dlq WHERE reprocessed = 0 AND discarded_at IS NULL`},
		{&s.IdempotencyKeys, `SELECT count(*) FROM order_idempotency_keys`},
	} {
		if err := db.QueryRow(c.query).Scan(c.dst); err != nil {
			tb.Fatalf("%s: %v", c.query, err)
		}
	}
	// Every order's id, status and version, and every line item's status.
	err := db.QueryRow(`SELECT coalesce(group_concat(v, ';'), '') FROM (
		SELECT id || ':' || status || ':' || version AS v FROM orders
		UNION ALL SELECT id || ':' || status FROM order_line_items ORDER BY 1)`).Scan(&s.Versions)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// unchanged asserts that nothing was written since before.
func (b *testBundle) unchanged(tb testing.TB, before dbState) {
	tb.Helper()
	if after := b.state(tb); after != before {
		tb.Errorf("database changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

var (
	createBody = map[string]any{
		"customer_id": "c-42", "currency": "EUR",
		"line_items": []map[string]any{{"product_id": "p-1", "product_type": "physical", "quantity": 2, "unit_price": 1999}},
	}
	mixedBody = map[string]any{
		"customer_id": "c-7", "currency": "USD",
		"line_items": []map[string]any{
			{"product_id": "p-1", "product_type": "physical", "quantity": 1, "unit_price": 1000},
			{"product_id": "d-1", "product_type": "digital", "quantity": 1, "unit_price": 500},
			{"product_id": "s-1", "product_type": "service", "quantity": 3, "unit_price": 100},
		},
	}
)

// createOrder creates an order through the API and returns it.
func (b *testBundle) createOrder(tb testing.TB, body any) order.Order {
	tb.Helper()
	var o order.Order
	b.do(tb, req{method: "POST", path: "/api/v1/orders", body: body}).decode(tb, http.StatusCreated, &o)
	return o
}

// pay confirms the order's payment through the API.
func (b *testBundle) pay(tb testing.TB, o order.Order) order.Order {
	tb.Helper()
	var paid order.Order
	b.do(tb, req{method: "POST", path: orderPath(o) + "/payment-confirmation",
		body: map[string]any{"payment_id": "pay_1", "amount": o.TotalAmount, "currency": o.Currency}}).
		decode(tb, http.StatusOK, &paid)
	return paid
}

// deadLetter enqueues an event of aggregate ("order", aggID) and moves it
// to the dead-letter queue at once, as a relay does after a permanent
// failure. Earlier events of the aggregate must be dead already.
func (b *testBundle) deadLetter(tb testing.TB, aggID, eventType string) outbox.DeadLetter {
	tb.Helper()
	ctx := context.Background()
	if b.lastSeq == nil {
		b.lastSeq = map[string]int64{}
	}
	b.lastSeq[aggID]++
	enq, err := b.client.Enqueue(ctx, outbox.Event{
		AggregateType: "order", AggregateID: aggID, Type: eventType, Sequence: b.lastSeq[aggID],
		Payload: json.RawMessage(`{"n":1}`), Headers: map[string]string{"traceparent": "00-abc-def-01"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	batch, err := b.driver.Claim(ctx, outbox.ClaimParams{Limit: 100, MoveOnPastDeadLetters: true})
	if err != nil {
		tb.Fatal(err)
	}
	outcomes := make([]outbox.Outcome, len(batch.Records()))
	found := false
	for i, r := range batch.Records() {
		if r.ID == enq[0].ID {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "broker said no"}
			found = true
		} else {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "later", Delay: time.Hour}
		}
	}
	if err := batch.Finish(ctx, outcomes); err != nil {
		tb.Fatal(err)
	}
	if !found {
		tb.Fatalf("event %s was not claimed", enq[0].ID)
	}
	dls, err := b.driver.ListDeadLetters(ctx, outbox.DeadLetterFilter{AggregateID: aggID, EventType: eventType})
	if err != nil {
		tb.Fatal(err)
	}
	for _, d := range dls {
		if d.EventID == enq[0].ID {
			return d
		}
	}
	tb.Fatalf("event %s is not in the dead-letter queue", enq[0].ID)
	return outbox.DeadLetter{}
}

func newUUID(tb testing.TB) uuid.UUID {
	tb.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
