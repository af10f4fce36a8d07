package outbox

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceContext is the W3C Trace Context propagator. It is used directly,
// never through the OpenTelemetry globals, so the library keeps no global
// state.
var traceContext propagation.TraceContext

// TraceContext returns ctx carrying the trace context of a received event:
// the remote span context of its traceparent and tracestate extensions (the
// span of the request that wrote the event, when the writer traces). A
// consumer starts its processing span from the returned context to continue
// that trace:
//
//	ce, err := outbox.ParseCloudEvent(body)
//	…
//	ctx, span := tracer.Start(outbox.TraceContext(ctx, ce), "process "+ce.Type,
//		trace.WithSpanKind(trace.SpanKindConsumer))
//	defer span.End()
//
// An event without a valid traceparent leaves ctx as it is.
func TraceContext(ctx context.Context, ce CloudEvent) context.Context {
	return traceContext.Extract(ctx, traceCarrier(ce.TraceParent, ce.TraceState))
}

// SpanContext returns the span context of headers' "traceparent" and
// "tracestate" (an Event's or a Record's Headers), which is not valid when
// there is no valid traceparent.
func SpanContext(headers map[string]string) trace.SpanContext {
	ctx := traceContext.Extract(context.Background(), traceCarrier(headers["traceparent"], headers["tracestate"]))
	return trace.SpanContextFromContext(ctx)
}

func traceCarrier(parent, state string) propagation.MapCarrier {
	c := propagation.MapCarrier{}
	if parent != "" {
		c["traceparent"] = parent
	}
	if state != "" {
		c["tracestate"] = state
	}
	return c
}

// startPublishSpan starts the span of a batch's publish, linked to the span
// of each event's writer, when the relay traces. With no tracer it returns
// ctx and a nil span.
func (r *Relay) startPublishSpan(ctx context.Context, records []Record) (context.Context, trace.Span) {
	if r.cfg.Tracer == nil {
		return ctx, nil
	}
	links := make([]trace.Link, 0, len(records))
	for i := range records {
		if sc := SpanContext(records[i].Headers); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
				attribute.String("messaging.message.id", records[i].ID.String()),
			}})
		}
	}
	return r.cfg.Tracer.Start(ctx, "outbox publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.operation.name", "publish"),
			attribute.Int("messaging.batch.message_count", len(records)),
		))
}

// endPublishSpan records a batch's result on its span (from
// startPublishSpan; nil does nothing) and ends it.
func endPublishSpan(span trace.Span, outcomes []Outcome, outage error) {
	if span == nil {
		return
	}
	defer span.End()
	if outage != nil {
		span.RecordError(outage)
		span.SetStatus(codes.Error, "broker unavailable")
		return
	}
	var published, retried, deadLettered int
	for _, o := range outcomes {
		switch o.Kind {
		case OutcomePublished:
			published++
		case OutcomeRetry:
			retried++
		case OutcomeDeadLetter:
			deadLettered++
		}
	}
	span.SetAttributes(
		attribute.Int("herald.outbox.published", published),
		attribute.Int("herald.outbox.retried", retried),
		attribute.Int("herald.outbox.dead_lettered", deadLettered),
	)
	if published < len(outcomes) {
		span.SetStatus(codes.Error, "some events were not published")
	}
}
