package app_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/outbox"
)

const (
	clientTraceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent     = "00-" + clientTraceID + "-00f067aa0ba902b7-01"
	createOrderInput = `{"customer_id":"c","currency":"EUR","line_items":[{"product_id":"p","product_type":"digital","quantity":1,"unit_price":5}]}`
)

// createAndRelay starts cfg's App, creates an order over HTTP with the
// client's traceparent, waits for its event on the log broker, shuts the
// App down and returns the event.
func createAndRelay(t *testing.T, cfg app.Config, events *lockedBuffer) outbox.CloudEvent {
	t.Helper()
	ctx := context.Background()
	a, err := app.Start(ctx, cfg, app.Options{HTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.URL()+"/api/v1/orders", strings.NewReader(createOrderInput))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", clientParent)
	req.Header.Set("tracestate", "vendor=x")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		_ = a.Shutdown(ctx)
		t.Fatalf("create order: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(events.String(), "order.created") {
		if time.Now().After(deadline) {
			_ = a.Shutdown(ctx)
			t.Fatal("the order's event was not published")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines([]byte(events.String())) {
		if ce, err := outbox.ParseCloudEvent(line); err == nil && ce.Type == "order.created" {
			return ce
		}
	}
	t.Fatalf("no order.created event in:\n%s", events.String())
	return outbox.CloudEvent{}
}

// With tracing on, a request is a server span continuing the client's
// trace, its write transaction a span under it, and the relay's publish of
// its event a span linked to it; the event carries the request's span.
func TestTracingConnectsRequestAndPublish(t *testing.T) {
	t.Parallel()
	events := &lockedBuffer{}
	cfg := testConfig(t, events)
	exp := tracetest.NewInMemoryExporter()
	cfg.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ce := createAndRelay(t, cfg, events)

	var request, tx, publish *tracetest.SpanStub
	spans := exp.GetSpans()
	for i := range spans {
		switch s := &spans[i]; s.Name {
		case "POST /api/v1/orders":
			request = s
		case "ordersvc.create_order transaction":
			tx = s
		}
	}
	// Spans are exported as they end, and the relay may publish before
	// the request's span has ended: look for the link once all are known.
	for i := range spans {
		if s := &spans[i]; s.Name == "outbox publish" && request != nil {
			for _, l := range s.Links {
				if l.SpanContext.SpanID() == request.SpanContext.SpanID() {
					publish = s
				}
			}
		}
	}
	if request == nil || tx == nil || publish == nil {
		t.Fatalf("spans: request %v, transaction %v, publish linked to the request %v; all: %v",
			request != nil, tx != nil, publish != nil, spanNames(spans))
	}
	if request.SpanKind != trace.SpanKindServer || request.SpanContext.TraceID().String() != clientTraceID ||
		request.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("request span %v (parent %v) does not continue the client's trace", request.SpanContext, request.Parent)
	}
	if tx.Parent.SpanID() != request.SpanContext.SpanID() {
		t.Errorf("transaction span's parent %v, want the request's span", tx.Parent.SpanID())
	}
	if publish.SpanKind != trace.SpanKindProducer {
		t.Errorf("publish span kind %v", publish.SpanKind)
	}
	for _, l := range publish.Links {
		if l.SpanContext.TraceID() != request.SpanContext.TraceID() {
			t.Errorf("publish span links to trace %v, want the request's %v", l.SpanContext.TraceID(), request.SpanContext.TraceID())
		}
	}
	// The consumer continues from the request's span.
	sc := trace.SpanContextFromContext(outbox.TraceContext(context.Background(), ce))
	if sc.TraceID() != request.SpanContext.TraceID() || sc.SpanID() != request.SpanContext.SpanID() {
		t.Errorf("event traceparent %q, want the request's span %v", ce.TraceParent, request.SpanContext)
	}
	if ce.TraceState != "vendor=x" {
		t.Errorf("event tracestate %q, want the client's", ce.TraceState)
	}
}

// With tracing off (no OTLP endpoint), nothing changes: the event carries
// the client's own traceparent.
func TestTracingOffKeepsClientTraceparent(t *testing.T) {
	t.Parallel()
	events := &lockedBuffer{}
	cfg := testConfig(t, events)
	cfg.LookupEnv = func(k string) (string, bool) {
		if k == "OTEL_TRACES_EXPORTER" {
			return "otlp", true
		}
		return "", false
	}
	ce := createAndRelay(t, cfg, events)
	if ce.TraceParent != clientParent || ce.TraceState != "vendor=x" {
		t.Errorf("event trace context %q %q, want the client's", ce.TraceParent, ce.TraceState)
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	return names
}
