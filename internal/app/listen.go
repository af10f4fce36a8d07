package app

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMaxConnections is the default cap of the API listener's open
// connections (--max-connections).
const DefaultMaxConnections = 1024

// maxConnections is c.MaxConnections, or its default when zero.
func (c Config) maxConnections() int {
	if c.MaxConnections == 0 {
		return DefaultMaxConnections
	}
	return c.MaxConnections
}

// validateListeners checks the connection cap and the metrics address.
func (c Config) validateListeners() error {
	if c.MaxConnections < 0 {
		return usagef("--max-connections must be at least 1, got %d", c.MaxConnections)
	}
	if c.MetricsAddr == "" {
		return nil
	}
	if err := checkListenAddr("--metrics-addr", c.MetricsAddr, 0); err != nil {
		return err
	}
	if _, port, _ := net.SplitHostPort(c.MetricsAddr); c.MetricsAddr == c.HTTPAddr && port != "0" {
		return usagef("--metrics-addr %q is also --http-addr: give /metrics an address of its own, "+
			"or leave --metrics-addr empty to serve it on the API's listener", c.MetricsAddr)
	}
	return nil
}

// newHTTPServer returns a server of h with Herald's timeouts and limits.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// metricsHandler is the handler of the --metrics-addr listener: GET /metrics
// serves reg, every other path is 404.
func metricsHandler(reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
