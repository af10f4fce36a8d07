package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of Herald's own spans.
const tracerName = "github.com/heraldhq/herald"

// newTracing sets up the tracer provider the OTEL_* variables ask for (read
// through lookup), or returns a nil provider when tracing is off: when
// OTEL_SDK_DISABLED is true, OTEL_TRACES_EXPORTER is none, or no OTLP
// endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). The exporter is OTLP over HTTP
// (protobuf); it, the sampler (OTEL_TRACES_SAMPLER), the batch processor
// (OTEL_BSP_*) and the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES;
// service.name defaults to herald) read their standard variables. The
// returned function flushes and stops the provider.
func newTracing(ctx context.Context, lookup func(string) (string, bool)) (trace.TracerProvider, func(context.Context) error, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") {
		return nil, nil, nil
	}
	switch exp := strings.ToLower(get("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return nil, nil, nil
	case "", "otlp":
	default:
		return nil, nil, usagef("OTEL_TRACES_EXPORTER=%s: Herald exports traces with otlp only (or none)", exp)
	}
	if get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" && get("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return nil, nil, nil
	}
	protocol := get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = get("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol != "" && protocol != "http/protobuf" {
		return nil, nil, usagef("OTEL_EXPORTER_OTLP_PROTOCOL=%s: Herald exports OTLP over http/protobuf only (port 4318)", protocol)
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.Default()
	for _, r := range []*resource.Resource{
		resource.NewSchemaless(attribute.String("service.name", "herald")),
		resource.Environment(), // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win
	} {
		if merged, err := resource.Merge(res, r); err == nil {
			res = merged
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// withTracing wraps the API in otelhttp: each request is a server span
// (named after its route by the API), continuing the client's traceparent.
// Only the W3C Trace Context propagator is used, and no OpenTelemetry
// global.
func withTracing(h http.Handler, tp trace.TracerProvider) http.Handler {
	return otelhttp.NewHandler(h, "HTTP",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false // probes and scrapes are not worth a span each
			}
			return true
		}),
	)
}
