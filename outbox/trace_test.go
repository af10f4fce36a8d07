package outbox_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/outbox"
)

// bodyPublisher acknowledges every message and keeps its body.
type bodyPublisher struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (p *bodyPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		p.bodies = append(p.bodies, m.Body)
	}
	return make([]error, len(msgs))
}
func (p *bodyPublisher) Close() error { return nil }

func (p *bodyPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.bodies)
}

const (
	writerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	writerState  = "vendor=x"
)

// With a Tracer, each batch's publish is a producer span with a link to
// the writer's span of each event that carries a traceparent.
func TestRelayTracesEachBatchLinkedToTheWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	client := outbox.NewClient[*sql.Tx](store)
	headers := map[string]string{"traceparent": writerParent, "tracestate": writerState}
	for _, h := range []map[string]string{headers, nil} {
		if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "a", AggregateID: "1", Type: "t", Payload: []byte(`1`), Headers: h}); err != nil {
			t.Fatal(err)
		}
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	pub := &bodyPublisher{}
	relay := outbox.NewRelay(store, pub, outbox.RelayConfig{
		BatchSize: 10, PollInterval: 2 * time.Millisecond, Tracer: tp.Tracer("test"),
	})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(rctx) }()
	waitFor(t, "both events published", func() bool { return pub.count() == 2 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var links []trace.SpanContext
	batches := 0
	for _, s := range exp.GetSpans() {
		if s.Name != "outbox publish" {
			t.Errorf("unexpected span %q", s.Name)
			continue
		}
		batches++
		if s.SpanKind != trace.SpanKindProducer {
			t.Errorf("publish span kind %v, want producer", s.SpanKind)
		}
		for _, l := range s.Links {
			links = append(links, l.SpanContext)
		}
	}
	if batches == 0 {
		t.Fatal("no publish span")
	}
	if len(links) != 1 {
		t.Fatalf("publish spans link to %v, want the one writer's span", links)
	}
	if got := links[0]; got.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		got.SpanID().String() != "00f067aa0ba902b7" || !got.IsRemote() || got.TraceState().String() != writerState {
		t.Errorf("link to %v, want the writer's span", got)
	}
}

// Without a Tracer nothing is traced and the events keep their headers.
func TestRelayWithoutTracerKeepsTraceparent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	client := outbox.NewClient[*sql.Tx](store)
	if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "a", AggregateID: "1", Type: "t", Payload: []byte(`1`),
		Headers: map[string]string{"traceparent": writerParent}}); err != nil {
		t.Fatal(err)
	}
	pub := &bodyPublisher{}
	relayOn(t, store, pub)
	waitFor(t, "the event published", func() bool { return pub.count() == 1 })
	pub.mu.Lock()
	ce, err := outbox.ParseCloudEvent(pub.bodies[0])
	pub.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if ce.TraceParent != writerParent {
		t.Errorf("traceparent %q, want %q", ce.TraceParent, writerParent)
	}
}

func TestTraceContext(t *testing.T) {
	t.Parallel()
	ctx := outbox.TraceContext(context.Background(), outbox.CloudEvent{TraceParent: writerParent, TraceState: writerState})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsRemote() || !sc.IsSampled() ||
		sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" ||
		sc.TraceState().String() != writerState {
		t.Errorf("span context %+v, want the event's traceparent", sc)
	}
	for _, bad := range []string{"", "00-zz", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if sc := trace.SpanContextFromContext(outbox.TraceContext(context.Background(), outbox.CloudEvent{TraceParent: bad})); sc.IsValid() {
			t.Errorf("traceparent %q gave span context %v", bad, sc)
		}
	}
}
