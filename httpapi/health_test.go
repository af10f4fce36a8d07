package httpapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthz(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var h HealthResponse
	b.do(t, req{method: "GET", path: "/healthz"}).decode(t, 200, &h)
	if h != (HealthResponse{Status: "ok", Version: "1.2.3-test"}) {
		t.Errorf("healthz %+v", h)
	}
	// HEAD matches GET routes.
	if r := b.do(t, req{method: "HEAD", path: "/healthz"}); r.Code != 200 {
		t.Errorf("HEAD /healthz: %d", r.Code)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	t.Run("no check", func(t *testing.T) {
		t.Parallel()
		var h HealthResponse
		setup(t).do(t, req{method: "GET", path: "/readyz"}).decode(t, 200, &h)
		if h != (HealthResponse{Status: "ready", Version: "1.2.3-test"}) {
			t.Errorf("readyz %+v", h)
		}
	})
	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		var deadline time.Time
		b := setup(t, func(c *Config) {
			c.Ready = func(ctx context.Context) error {
				deadline, _ = ctx.Deadline()
				return nil
			}
		})
		var h HealthResponse
		b.do(t, req{method: "GET", path: "/readyz"}).decode(t, 200, &h)
		if h.Status != "ready" {
			t.Errorf("status %q", h.Status)
		}
		if left := time.Until(deadline); left <= 0 || left > ReadyTimeout {
			t.Errorf("check ran with %v left, want at most %v", left, ReadyTimeout)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *Config) {
			c.Ready = func(context.Context) error { return errors.New("broker: dial tcp 10.0.0.7:4222: connection refused") }
		})
		r := b.do(t, req{method: "GET", path: "/readyz"})
		p := r.problem(t, 503, eUnavailable, "/readyz")
		if p.Detail != "A dependency (database or broker) is unavailable." || strings.Contains(string(r.Body), "10.0.0.7") {
			t.Errorf("problem %+v", p)
		}
		if logs := b.logs.String(); !strings.Contains(logs, "10.0.0.7:4222: connection refused") {
			t.Errorf("the cause is not logged:\n%s", logs)
		}
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	extra := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_test_extra_total", Help: "Registered by the caller."})
	b := setup(t)
	b.registry.MustRegister(extra)
	extra.Add(3)

	b.createOrder(t, createBody)
	b.do(t, req{method: "GET", path: "/api/v1/orders/nope"})
	b.do(t, req{method: "GET", path: "/api/v1/orders/nope"})
	b.do(t, req{method: "GET", path: "/no/such/route"})
	b.do(t, req{method: "BREW", path: "/api/v1/orders"})

	r := b.do(t, req{method: "GET", path: "/metrics"})
	if r.Code != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", r.Code, r.Header.Get("Content-Type"))
	}
	body := string(r.Body)
	for _, want := range []string{
		`herald_http_requests_total{method="POST",route="/api/v1/orders",status="201"} 1`,
		`herald_http_requests_total{method="GET",route="/api/v1/orders/{id}",status="404"} 2`,
		`herald_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`herald_http_requests_total{method="OTHER",route="unmatched",status="405"} 1`,
		`herald_http_request_duration_seconds_count{method="POST",route="/api/v1/orders",status="201"} 1`,
		`herald_http_request_duration_seconds_bucket{method="GET",route="/api/v1/orders/{id}",status="404",le="+Inf"} 2`,
		`herald_test_extra_total 3`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "/no/such/route") || strings.Contains(body, "nope") {
		t.Error("unmatched paths leak into labels")
	}

	// A second handler on the same registry shares the metrics.
	second := newServer(Config{Orders: b.svc, Outbox: b.driver, Registry: b.registry})
	if second.metrics.requests != b.srv.metrics.requests {
		t.Error("the second handler registered its own counter")
	}
}

func TestMetricsDefaultRegistry(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.Registry = nil })
	r := b.do(t, req{method: "GET", path: "/metrics"})
	body := string(r.Body)
	for _, want := range []string{"go_goroutines ", "process_start_time_seconds"} {
		if !strings.Contains(body, want) {
			t.Errorf("the default registry lacks %s", want)
		}
	}
	if strings.Contains(body, `herald_http_requests_total{method="GET",route="/metrics"`) {
		t.Error("a request counted before it finished") // metrics are observed after the handler
	}
}

func TestNewPanicsWithoutDependencies(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"httpapi: Config.Orders is required": {},
		"httpapi: Config.Outbox is required": {Orders: panicOnGet{}},
	} {
		func() {
			defer func() {
				if v := recover(); v != name {
					t.Errorf("recovered %v, want %q", v, name)
				}
			}()
			New(cfg)
		}()
	}
}

func TestAccessLogAndRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, req{method: "GET", path: "/healthz", headers: []string{"X-Request-Id", "abc-123"}})
	if got := r.Header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}
	r = b.do(t, req{method: "GET", path: "/healthz", headers: []string{"X-Request-Id", "bad id\twith controls"}})
	if got := r.Header.Get("X-Request-Id"); len(got) != 36 {
		t.Errorf("X-Request-Id %q, want a fresh UUID", got)
	}
	logs := b.logs.String()
	for _, want := range []string{`"msg":"http request"`, `"method":"GET"`, `"path":"/healthz"`, `"route":"/healthz"`,
		`"status":200`, `"request_id":"abc-123"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s:\n%s", want, logs)
		}
	}
}
