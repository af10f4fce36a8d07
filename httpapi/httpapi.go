// Package httpapi is Herald's HTTP API: the order routes over an
// order.Service, the dead-letter and stats routes over the outbox engine,
// health, readiness, Prometheus metrics and the OpenAPI 3.1 document.
//
// Every error is an RFC 9457 problem document (application/problem+json).
// Application error codes map to HTTP statuses in one place (see codes in
// error.go); internal errors are logged and never shown to the client.
//
//	apiToken, adminToken := os.Getenv("HERALD_API_TOKEN"), os.Getenv("HERALD_ADMIN_TOKEN")
//	if err := httpapi.CheckListenAddr(addr, apiToken != "" || adminToken != ""); err != nil {
//		return err // a non-loopback address without tokens is refused
//	}
//	h := httpapi.New(httpapi.Config{
//		Orders:     svc,   // order.Service
//		Outbox:     driver, // outbox.Admin: the dead letters and figures
//		APIToken:   apiToken,
//		AdminToken: adminToken,
//		Logger:     logger,
//	})
//	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/internal/webui"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// MaxBodyBytes is the largest request body the API reads; a larger one is
// refused with 413.
const MaxBodyBytes = 1 << 20

// ReadyTimeout bounds one readiness check.
const ReadyTimeout = 5 * time.Second

// Registry is where the API registers its metrics and what /metrics serves.
// *prometheus.Registry is one.
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Config configures the handler New returns.
type Config struct {
	// Orders serves the order routes. Required.
	Orders order.Service
	// Outbox serves the dead-letter and stats routes. Required.
	Outbox outbox.Admin
	// RelayCounters, when set, adds the in-process relay's published,
	// retried and dead-lettered counts to GET /api/v1/outbox/stats.
	RelayCounters func() outbox.RelayCounters
	// Checks are the dependencies GET /readyz and the outbox's health
	// report probe. None means always ready.
	Checks []Check
	// Slot, when set, reports the replication slot of a change-data-capture
	// relay for the health verdict (nil: none, or no slot).
	Slot func(ctx context.Context) (*outbox.SlotHealth, error)
	// HealthThresholds tune GET /api/v1/outbox/health's verdict; zero
	// fields take outbox.HealthThresholds' defaults.
	HealthThresholds outbox.HealthThresholds

	// APIToken is the bearer token of the order routes; AdminToken that of
	// the outbox routes, and it works on the order routes too. With both
	// empty every route is open: listen on loopback only (CheckListenAddr).
	// With only APIToken set, the outbox routes are closed to everyone;
	// with only AdminToken set, every route needs the admin token.
	APIToken   string
	AdminToken string

	// Logger gets the access log and internal errors; nil discards them.
	Logger *slog.Logger
	// Registry gets the API's HTTP metrics and is what /metrics serves, with
	// whatever else the caller registered on it. Nil means a fresh registry
	// with the Go runtime and process collectors.
	Registry Registry
	// NoMetrics leaves GET /metrics out of the API (it answers 404), for a
	// process that serves Registry on a listener of its own (herald serve
	// --metrics-addr). The HTTP metrics are still registered on Registry.
	NoMetrics bool
	// Version is reported by /healthz and in the OpenAPI document.
	Version string

	// UI, when set, serves the operator web UI at /ui/ (package webui) and
	// redirects / there. Its Orders, Outbox, Health, AdminToken, Open and
	// Logger are this Config's when left zero; Events is Outbox when that
	// implements outbox.EventReader.
	UI *webui.Config
}

// server is the API's http.Handler, built by New.
type server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	auth    authenticator
	metrics *metrics
	openapi []byte
	recent  recentCounters // the relay's counters as the health report saw them
	// routes lists every pattern registered on mux, for the OpenAPI test.
	registered []route
}

// Actors recorded in RequestOptions.Actor and the audit trail.
const (
	ActorAPI       = "api"
	ActorAdmin     = "admin"
	ActorAnonymous = "anonymous"
)

// New returns the API handler. It panics if cfg.Orders or cfg.Outbox is nil,
// or if its metrics cannot be registered on cfg.Registry.
func New(cfg Config) http.Handler { return newServer(cfg) }

func newServer(cfg Config) *server {
	if cfg.Orders == nil {
		panic("httpapi: Config.Orders is required")
	}
	if cfg.Outbox == nil {
		panic("httpapi: Config.Outbox is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Registry = reg
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		panic(fmt.Sprintf("httpapi: registering metrics: %v", err))
	}
	doc, err := openAPIDocument(cfg.Version)
	if err != nil {
		panic(fmt.Sprintf("httpapi: embedded OpenAPI document: %v", err))
	}
	s := &server{
		cfg:     cfg,
		log:     slog.New(requestIDHandler{cfg.Logger.Handler()}),
		mux:     http.NewServeMux(),
		auth:    newAuthenticator(cfg.APIToken, cfg.AdminToken),
		metrics: m,
		openapi: doc,
	}
	s.routes()
	return s
}

// access says who may call a route.
type access int

const (
	public access = iota // anyone
	user                 // the API or the admin token
	admin                // the admin token
)

// routes registers every route of the API (openapi.json documents them).
func (s *server) routes() {
	const orders = "/api/v1/orders"
	s.handle("POST "+orders, user, s.handleCreateOrder)
	s.handle("GET "+orders, user, s.handleListOrders)
	s.handle("GET "+orders+"/{id}", user, s.handleGetOrder)
	s.handle("POST "+orders+"/{id}/payment-confirmation", user, s.handleConfirmPayment)
	s.handle("POST "+orders+"/{id}/transitions", user, s.handleTransitionOrder)
	s.handle("GET "+orders+"/{id}/transitions", user, s.handleListTransitions)
	s.handle("POST "+orders+"/{id}/line-items/{item}/transitions", user, s.handleTransitionLineItem)

	const ob = "/api/v1/outbox"
	s.handle("GET "+ob+"/health", admin, s.handleOutboxHealth)
	s.handle("GET "+ob+"/stats", admin, s.handleStats)
	s.handle("GET "+ob+"/dlq", admin, s.handleListDeadLetters)
	s.handle("POST "+ob+"/dlq/replay", admin, s.handleReplayDeadLetters)
	s.handle("GET "+ob+"/dlq/{id}", admin, s.handleGetDeadLetter)
	s.handle("DELETE "+ob+"/dlq/{id}", admin, s.handleDiscardDeadLetter)
	s.handle("POST "+ob+"/dlq/{id}/replay", admin, s.handleReplayDeadLetter)

	s.handle("GET /healthz", public, s.handleHealthz)
	s.handle("GET /readyz", public, s.handleReadyz)
	if !s.cfg.NoMetrics {
		s.handle("GET /metrics", public, promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP)
	}
	s.handle("GET /openapi.json", public, s.handleOpenAPI)

	if s.cfg.UI != nil {
		s.routeUI(*s.cfg.UI)
	}
}

// routeUI mounts the operator web UI at webui.Prefix and redirects / there.
// It is HTML, not part of the JSON API, so its routes are not in registered
// (nor in the OpenAPI document); the UI checks its own sessions.
func (s *server) routeUI(uc webui.Config) {
	if uc.Orders == nil {
		uc.Orders = s.cfg.Orders
	}
	if uc.Outbox == nil {
		uc.Outbox = s.cfg.Outbox
	}
	if uc.Events == nil {
		uc.Events, _ = s.cfg.Outbox.(outbox.EventReader)
	}
	if uc.Health == nil {
		uc.Health = func(ctx context.Context) (outbox.Health, error) {
			h, err := s.outboxHealth(ctx)
			return h.Health, err
		}
	}
	if uc.AdminToken == "" {
		uc.AdminToken = s.cfg.AdminToken
	}
	uc.Open = uc.Open || s.auth.open
	if uc.Logger == nil {
		uc.Logger = s.cfg.Logger.With("component", "webui")
	}
	ui := webui.New(uc)
	s.mux.Handle(webui.Prefix, ui)
	s.mux.Handle("GET /{$}", http.RedirectHandler(webui.Prefix, http.StatusFound))
}

// route is one registered route.
type route struct {
	pattern string // "METHOD /path"
	access  access
}

// handle registers h on pattern behind the access check.
func (s *server) handle(pattern string, a access, h http.HandlerFunc) {
	s.registered = append(s.registered, route{pattern, a})
	s.mux.Handle(pattern, nameSpan(pattern, s.authorize(a, h)))
}

// nameSpan names the request's OpenTelemetry span (otelhttp's, when the
// application traces) after its route, as in "POST /api/v1/orders/{id}/transitions".
func nameSpan(pattern string, h http.Handler) http.Handler {
	method, path, _ := strings.Cut(pattern, " ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			span.SetName(pattern)
			span.SetAttributes(attribute.String("http.route", path), attribute.String("http.request.method", method))
		}
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP recovers panics, writes the access log and the metrics, and
// turns the mux's plain-text 404 and 405 into problem documents.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	reqID := requestID(r)
	rw.Header().Set("X-Request-Id", reqID)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, reqID))

	h, pattern := s.mux.Handler(r)
	route := routeLabel(pattern)

	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // a sentinel panic value, never wrapped
				panic(v)
			}
			s.log.ErrorContext(r.Context(), "http: panic serving request",
				"method", r.Method, "path", r.URL.Path, "request_id", reqID,
				"panic", fmt.Sprint(v), "stack", stack())
			if !rw.wroteHeader {
				writeProblem(rw, r, newProblem(order.EINTERNAL, "Internal error."))
			}
		}
		s.finish(rw, r, route, reqID, start)
	}()

	if err := checkBodyHeaders(rw, r); err != nil {
		writeProblem(rw, r, err)
		return
	}
	if pattern == "" {
		s.serveUnmatched(rw, r, h)
		return
	}
	s.mux.ServeHTTP(rw, r)
}

// serveUnmatched runs the mux's own handler for a request no pattern
// matched, keeping its status and Allow header but writing a problem
// document instead of its plain-text body. Redirects pass through.
func (s *server) serveUnmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	c := &captureWriter{header: http.Header{}}
	h.ServeHTTP(c, r)
	switch c.status {
	case http.StatusNotFound:
		writeProblem(w, r, newProblem(order.ENOTFOUND, "No route matches "+truncate(r.URL.Path, 200)+"."))
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", c.header.Get("Allow"))
		writeProblem(w, r, newProblem(eMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s; allowed: %s.", truncate(r.Method, 20), truncate(r.URL.Path, 200), c.header.Get("Allow"))))
	default:
		for k, v := range c.header {
			w.Header()[k] = v
		}
		w.WriteHeader(c.status)
		_, _ = w.Write(c.body.Bytes())
	}
}

// finish writes the access log line and the request metrics.
func (s *server) finish(rw *responseWriter, r *http.Request, route, reqID string, start time.Time) {
	status := rw.statusCode()
	elapsed := time.Since(start)
	s.metrics.observe(r.Method, route, status, elapsed)
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case route == "/healthz" || route == "/readyz" || route == "/metrics":
		// Probes and scrapes come every few seconds: at info they would
		// bury the requests an on-call engineer looks for.
		level = slog.LevelDebug
	}
	s.log.LogAttrs(r.Context(), level, "http request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", rw.bytes),
		slog.Duration("duration", elapsed),
		slog.String("request_id", reqID),
		slog.String("remote", r.RemoteAddr),
	)
}

// routeLabel is the metrics label of a matched pattern: its path part, or
// "unmatched" so that unknown paths cannot grow the label set.
func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}
