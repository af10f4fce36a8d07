package sqliteorders_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// With a Tracer, each write's transaction is a span under the request's
// span, and the events carry the request's span context (not the
// transaction's) as their traceparent.
func TestTracedWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	driver, store := open(t)
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	svc := ordersvc.New(store, ordersvc.Config{Tracer: tp.Tracer("test")})

	// The client's own traceparent is what the request's span continues.
	ctx = ordersvc.ContextWithTraceContext(ctx, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
	rctx, req := tp.Tracer("test").Start(ctx, "request")
	o, err := svc.CreateOrder(rctx, order.CreateOrder{CustomerID: "c", Currency: "EUR", LineItems: []order.CreateLineItem{
		{ProductID: "p", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 100},
	}}, order.RequestOptions{Actor: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.TransitionOrder(rctx, o.ID, order.TransitionRequest{To: order.StatusCancelled, Reason: "r"}, order.RequestOptions{Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	req.End()

	want := req.SpanContext()
	var txSpans []string
	for _, s := range exp.GetSpans() {
		if s.Name == "request" {
			continue
		}
		txSpans = append(txSpans, s.Name)
		if s.Parent.SpanID() != want.SpanID() || s.SpanContext.TraceID() != want.TraceID() {
			t.Errorf("span %q is not a child of the request's span", s.Name)
		}
	}
	if len(txSpans) != 2 || txSpans[0] != "ordersvc.create_order transaction" || txSpans[1] != "ordersvc.transition_order transaction" {
		t.Errorf("transaction spans %q", txSpans)
	}

	// Publish every event (an aggregate's next one is claimable once the
	// one before is published) and check each one's trace context.
	events := 0
	for {
		batch, err := driver.Claim(ctx, outbox.ClaimParams{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		recs := batch.Records()
		if len(recs) == 0 {
			_ = batch.Release(ctx)
			break
		}
		for _, r := range recs {
			events++
			if sc := outbox.SpanContext(r.Headers); !sc.Equal(want.WithRemote(true)) {
				t.Errorf("event %s headers %v, want the request's span %v", r.Type, r.Headers, want)
			}
		}
		outcomes := make([]outbox.Outcome, len(recs))
		for i := range outcomes {
			outcomes[i].Kind = outbox.OutcomePublished
		}
		if err := batch.Finish(ctx, outcomes); err != nil {
			t.Fatal(err)
		}
	}
	if events < 2 {
		t.Errorf("%d events, want the creation's and the cancellation's", events)
	}
}
