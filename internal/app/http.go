package app

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/webui"
)

// newHandler builds the HTTP API on a's database, broker and relay; its
// metrics go to reg, which /metrics serves unless --metrics-addr serves it
// elsewhere.
func newHandler(a *App, reg *prometheus.Registry) (http.Handler, error) {
	if a.DB.Orders == nil {
		return nil, errors.New("no orders service on this database")
	}
	api := httpapi.New(httpapi.Config{
		Orders:           a.DB.Orders,
		Outbox:           a.DB.Admin,
		RelayCounters:    a.Relay.Counters,
		HealthThresholds: a.cfg.Health,
		Slot:             a.slotHealth(),
		Checks: []httpapi.Check{
			{Name: "database", Required: true, Probe: a.DB.Ping},
			{Name: "broker", Probe: a.Broker.Ping},
		},
		APIToken:   a.cfg.APIToken,
		AdminToken: a.cfg.AdminToken,
		Logger:     a.cfg.Logger.With("component", "http"),
		Version:    a.cfg.Version,
		Registry:   reg,
		NoMetrics:  a.cfg.MetricsAddr != "",
		UI: &webui.Config{
			Live:                  a.live,
			MoveOnPastDeadLetters: a.cfg.Relay.MoveOnPastDeadLetters,
		},
	})
	h := withTraceContext(api)
	if a.tracer != nil {
		h = withTracing(h, a.tracer)
	}
	return h, nil
}

// withTraceContext hands the request's W3C trace context to the orders
// service, which stores it with the events so consumers can join the trace.
func withTraceContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tp := r.Header.Get("traceparent"); tp != "" {
			ctx := ordersvc.ContextWithTraceContext(r.Context(), tp, r.Header.Get("tracestate"))
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
