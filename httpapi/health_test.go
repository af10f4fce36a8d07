package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
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
		var h ReadyResponse
		setup(t).do(t, req{method: "GET", path: "/readyz"}).decode(t, 200, &h)
		if h.Status != "ready" || h.Version != "1.2.3-test" || len(h.Checks) != 0 {
			t.Errorf("readyz %+v", h)
		}
	})
	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		var deadline time.Time
		b := setup(t, func(c *Config) {
			c.Checks = []Check{{Name: "database", Required: true, Probe: func(ctx context.Context) error {
				deadline, _ = ctx.Deadline()
				return nil
			}}}
		})
		var h ReadyResponse
		b.do(t, req{method: "GET", path: "/readyz"}).decode(t, 200, &h)
		if h.Status != "ready" || len(h.Checks) != 1 || h.Checks[0] != (CheckResult{Name: "database", Status: "up", Required: true}) {
			t.Errorf("readyz %+v", h)
		}
		if left := time.Until(deadline); left <= 0 || left > ReadyTimeout {
			t.Errorf("check ran with %v left, want at most %v", left, ReadyTimeout)
		}
	})
	// The outbox absorbs a broker outage: the instance stays in service,
	// and the body says the broker is down.
	t.Run("broker down", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *Config) {
			c.Checks = []Check{
				{Name: "database", Required: true, Probe: func(context.Context) error { return nil }},
				{Name: "broker", Probe: func(context.Context) error { return errors.New("dial tcp 127.0.0.1:1: connection refused") }},
			}
		})
		var h ReadyResponse
		r := b.do(t, req{method: "GET", path: "/readyz"})
		r.decode(t, 200, &h)
		if h.Status != "ready" || len(h.Checks) != 2 || h.Checks[1] != (CheckResult{Name: "broker", Status: "down"}) {
			t.Errorf("readyz %+v", h)
		}
		if strings.Contains(string(r.Body), "connection refused") {
			t.Error("readyz shows the cause to anyone")
		}
	})
	t.Run("database down", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *Config) {
			c.Checks = []Check{{Name: "database", Required: true, Probe: func(context.Context) error {
				return errors.New("dial tcp 127.0.0.1:1: connection refused")
			}}}
		})
		r := b.do(t, req{method: "GET", path: "/readyz"})
		var h ReadyResponse
		r.decode(t, 503, &h)
		if h.Status != "not_ready" || h.Checks[0].Status != "down" || r.Header.Get("Retry-After") == "" || strings.Contains(string(r.Body), "127.0.0.1:1") {
			t.Errorf("readyz %+v, Retry-After %q", h, r.Header.Get("Retry-After"))
		}
		if logs := b.logs.String(); !strings.Contains(logs, "127.0.0.1:1: connection refused") {
			t.Errorf("the cause is not logged:\n%s", logs)
		}
	})
}

func TestOutboxHealth(t *testing.T) {
	t.Parallel()
	var counters outbox.RelayCounters
	brokerErr := error(nil)
	b := setup(t, func(c *Config) {
		c.RelayCounters = func() outbox.RelayCounters { return counters }
		c.Checks = []Check{{Name: "broker", Probe: func(context.Context) error { return brokerErr }}}
		c.HealthThresholds = outbox.HealthThresholds{DeadLetters: 1}
	})
	health := func() OutboxHealthResponse {
		var h OutboxHealthResponse
		b.do(t, req{method: "GET", path: "/api/v1/outbox/health"}).decode(t, 200, &h)
		return h
	}
	if h := health(); h.Verdict != outbox.HealthOK || len(h.Reasons) != 0 || len(h.Checks) != 1 {
		t.Fatalf("healthy: %+v", h)
	}
	// Two dead letters over a threshold of one: degraded.
	b.deadLetter(t, "agg-1", "thing.failed")
	b.deadLetter(t, "agg-2", "thing.failed")
	if h := health(); h.Verdict != outbox.HealthDegraded || len(h.Reasons) != 1 || !strings.Contains(h.Reasons[0], "2 open dead letters") || h.Stats.DLQSize != 2 {
		t.Fatalf("two dead letters: %+v", h)
	}
	// The relay finds the broker down: failing.
	counters = outbox.RelayCounters{BrokerDown: true}
	brokerErr = errors.New("not connected")
	if h := health(); h.Verdict != outbox.HealthFailing || len(h.Reasons) != 3 {
		t.Fatalf("broker down: %+v", h)
	}
	// Recent attempts: 30 retried of 40 since the last report.
	counters = outbox.RelayCounters{Published: 10, Retried: 30}
	brokerErr = nil
	if h := health(); h.Verdict != outbox.HealthDegraded || !strings.Contains(strings.Join(h.Reasons, ";"), "75% of 40 recent publish attempts failed") {
		t.Fatalf("retry rate: %+v", h)
	}
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

// Probes and scrapes are logged at debug, other requests at info; every
// line logged while a request is served carries its request id, the
// access log's and a dependency's alike.
func TestLogLevelsAndRequestIDs(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.Checks = []Check{{Name: "broker", Probe: func(context.Context) error { return errors.New("not connected") }}}
	})
	r := b.do(t, req{method: "GET", path: "/readyz", headers: []string{"X-Request-Id", "probe-1"}})
	b.do(t, req{method: "GET", path: "/api/v1/orders", headers: []string{"X-Request-Id", "list-1"}})
	if r.Header.Get("X-Request-Id") != "probe-1" {
		t.Fatalf("X-Request-Id %q", r.Header.Get("X-Request-Id"))
	}
	var probe, list, down map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch {
		case rec["msg"] == "http request" && rec["path"] == "/readyz":
			probe = rec
		case rec["msg"] == "http request" && rec["path"] == "/api/v1/orders":
			list = rec
		case rec["msg"] == "http: dependency down":
			down = rec
		}
	}
	if probe == nil || probe["level"] != "DEBUG" {
		t.Errorf("the /readyz access line: %v, want DEBUG", probe)
	}
	if list == nil || list["level"] != "INFO" || list["request_id"] != "list-1" {
		t.Errorf("the orders access line: %v, want INFO with request_id list-1", list)
	}
	if down == nil || down["request_id"] != "probe-1" {
		t.Errorf("the dependency's line: %v, want request_id probe-1", down)
	}
}
