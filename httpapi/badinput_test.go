package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// The findings of an adversarial run, each kept here so that the next run
// starts where it ended.

// TestDeadLetterFiltersOnPostgres sends the dead-letter filters that
// PostgreSQL cannot take (a NUL, bytes that are not UTF-8) to the outbox
// routes on a pgstore driver: they were a 500 ("invalid byte sequence for
// encoding UTF8: 0x00") where SQLite answered 200; both now refuse them with
// a 422 naming the field, and change nothing.
func TestDeadLetterFiltersOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	driver, err := pgstore.New(testdb.Postgres(t), pgstore.Config{Name: ordersvc.OutboxName, DisableNotify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *Config) { c.Outbox = driver })

	// One open dead letter, to see that nothing replays it.
	if _, err := outbox.NewClient[pgx.Tx](driver).Enqueue(ctx, outbox.Event{AggregateType: "order",
		AggregateID: "a", Type: "order.created", Sequence: 1, Payload: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	batch, err := driver.Claim(ctx, outbox.ClaimParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Finish(ctx, []outbox.Outcome{{Kind: outbox.OutcomeDeadLetter, Error: "poison"}}); err != nil {
		t.Fatal(err)
	}
	open := func() int64 {
		st, err := driver.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.DeadLetters
	}

	const replay = "/api/v1/outbox/dlq/replay"
	for _, tc := range []struct {
		body, field string
	}{
		{`{"aggregate_id":"a\u0000b"}`, "aggregate_id"},
		{`{"aggregate_type":"order\u0000"}`, "aggregate_type"},
		{`{"event_type":"\u0000","all":true}`, "event_type"},
		{`{"aggregate_id":"a\u0001"}`, "aggregate_id"},
	} {
		p := b.do(t, req{method: "POST", path: replay, body: tc.body}).problem(t, 422, order.EINVALID, replay)
		if len(p.Errors) != 1 || p.Errors[0].Field != tc.field || p.Errors[0].Message != "must not contain control characters" {
			t.Errorf("%s: errors %+v", tc.body, p.Errors)
		}
	}
	const list = "/api/v1/outbox/dlq"
	for query, field := range map[string]string{
		"?aggregate_id=a%00b":     "aggregate_id",
		"?aggregate_type=%FF":     "aggregate_type",
		"?event_type=x%C0%80":     "event_type", // an over-long NUL
		"?state=open%00":          "state",
		"?aggregate_id=%ED%A0%80": "aggregate_id", // a surrogate
	} {
		p := b.do(t, req{method: "GET", path: list + query}).problem(t, 422, order.EINVALID, list)
		if len(p.Errors) != 1 || p.Errors[0].Field != field {
			t.Errorf("%s: errors %+v", query, p.Errors)
		}
	}
	if n := open(); n != 1 {
		t.Fatalf("%d open dead letters after the refusals, want 1", n)
	}
	var l ListDeadLettersResponse
	b.do(t, req{method: "GET", path: list + "?state=all&aggregate_id=a"}).decode(t, 200, &l)
	if len(l.DeadLetters) != 1 || l.DeadLetters[0].State != outbox.DeadLetterOpen {
		t.Errorf("state=all: %+v", l.DeadLetters)
	}
	var rr ReplayResponse
	b.do(t, req{method: "POST", path: replay, body: `{"aggregate_id":"a"}`}).decode(t, 200, &rr)
	if rr.Replayed != 1 || open() != 0 {
		t.Errorf("replayed %d, %d open left", rr.Replayed, open())
	}
}

// refusedEvent is the real service with a CreateOrder that fails as the
// outbox refuses an event, wrapped by the layers it went through.
type refusedEvent struct{ order.Service }

func (refusedEvent) CreateOrder(context.Context, order.CreateOrder, order.RequestOptions) (order.Order, error) {
	return order.Order{}, fmt.Errorf("ordersvc: enqueue events: event 0: %w",
		fmt.Errorf("%w: header %q must be valid UTF-8 without NUL characters", outbox.ErrInvalidEvent, "tracestate"))
}

// TestInvalidEventDetailIsASentence: a problem's detail is written for the
// client, never the chain of internal errors, which goes to the log.
func TestInvalidEventDetailIsASentence(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.cfg.Orders = refusedEvent{b.svc}
	const path = "/api/v1/orders"
	r := b.do(t, req{method: "POST", path: path, body: createBody})
	p := r.problem(t, 422, order.EINVALID, path)
	if p.Detail != "The request cannot be stored as an event." {
		t.Errorf("detail %q", p.Detail)
	}
	for _, leak := range []string{"ordersvc", "outbox", "tracestate", "event 0", "UTF-8"} {
		if bytes.Contains(r.Body, []byte(leak)) {
			t.Errorf("the problem shows %q: %s", leak, r.Body)
		}
	}
	if logs := b.logs.String(); !strings.Contains(logs, `"msg":"http: the outbox refused the request's event"`) ||
		!strings.Contains(logs, `header \"tracestate\" must be valid UTF-8`) {
		t.Errorf("the reason is not logged:\n%s", logs)
	}

	// The same for a dead-letter filter that reaches the driver unchecked:
	// a 422 naming the field as the API does, not the driver's text.
	pr := toProblem(fmt.Errorf("pgstore: list dead letters: %w", &outbox.FilterError{Fields: []outbox.FilterFieldError{
		{Field: "AggregateID", Message: "must not contain control characters"}, {Field: "AfterID", Message: "must not be negative"}}}))
	if pr.Status != 422 || pr.Detail != "The dead-letter filter is invalid." || len(pr.Errors) != 2 ||
		pr.Errors[0] != (order.FieldError{Field: "aggregate_id", Message: "must not contain control characters"}) ||
		pr.Errors[1] != (order.FieldError{Field: "after", Message: "must not be negative"}) {
		t.Errorf("problem %+v", pr)
	}
}

// TestTraceContextIsAdvisory: a valid traceparent with a tracestate that is
// not UTF-8 was a 422 with internal text; trace context never fails a
// request: the bad tracestate is dropped, the traceparent kept.
func TestTraceContextIsAdvisory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		parent, state string
		want          map[string]string
	}{
		{tp, "congo=\xff\xfe", map[string]string{"traceparent": tp}},
		{tp, "congo=a\x00b", map[string]string{"traceparent": tp}},
		{tp, "not a list", map[string]string{"traceparent": tp}},
		{tp + "\xff", "congo=1", nil},
		{tp, "congo=t61rcWkgMzE", map[string]string{"traceparent": tp, "tracestate": "congo=t61rcWkgMzE"}},
	} {
		data, _ := json.Marshal(createBody)
		ctx := ordersvc.ContextWithTraceContext(context.Background(), tc.parent, tc.state)
		hr := httptest.NewRequestWithContext(ctx, "POST", "/api/v1/orders", bytes.NewReader(data))
		hr.Header.Set("Content-Type", "application/json")
		r := b.serve(hr)
		var o order.Order
		r.decode(t, http.StatusCreated, &o)
		batch, err := b.driver.Claim(context.Background(), outbox.ClaimParams{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []map[string]string
		for _, rec := range batch.Records() {
			if rec.AggregateID == o.ID.String() {
				got = append(got, rec.Headers)
			}
		}
		if err := batch.Finish(context.Background(), publishedAll(len(batch.Records()))); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || len(got[0]) != len(tc.want) || got[0]["traceparent"] != tc.want["traceparent"] ||
			got[0]["tracestate"] != tc.want["tracestate"] {
			t.Errorf("(%q, %q): event headers %v, want %v", tc.parent, tc.state, got, tc.want)
		}
	}
}

func publishedAll(n int) []outbox.Outcome {
	out := make([]outbox.Outcome, n)
	for i := range out {
		out[i] = outbox.Outcome{Kind: outbox.OutcomePublished}
	}
	return out
}
