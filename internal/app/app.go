package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/webui"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
	"github.com/heraldhq/herald/outbox/pgcdc"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// HTTP server timeouts. Request bodies are small (1 MiB at most) and no
// route streams, so generous fixed bounds suffice.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	// tracingShutdownTimeout bounds the flush of the last spans at a stop.
	tracingShutdownTimeout = 5 * time.Second
)

// Options choose what Start runs.
type Options struct {
	// HTTP serves the API next to the relay (herald serve). Without it only
	// the relay runs (herald relay).
	HTTP bool
}

// App is a running Herald process: the relay and, with Options.HTTP, the
// HTTP API, on an open database and broker.
type App struct {
	cfg Config
	log *slog.Logger

	DB     *Database
	Broker *Broker
	Relay  *outbox.Relay
	// CDC is the relay's change-data-capture source with RelayModeCDC.
	CDC *pgcdc.Source

	// live samples the relay for the web UI's overview, with Options.HTTP.
	live *webui.Live

	httpServer *http.Server
	url        string
	// metricsServer serves /metrics on --metrics-addr, when that is set.
	metricsServer *http.Server
	metricsURL    string

	// tracer is the provider of Herald's spans, nil when tracing is off;
	// stopTracing flushes and stops the one Start set up.
	tracer      trace.TracerProvider
	stopTracing func(context.Context) error

	relayCancel context.CancelFunc
	relayDone   chan struct{}
	failed      chan error // one component's fatal error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start opens the database and the broker, migrates (unless cfg.NoMigrate),
// and starts the relay and, with opts.HTTP, the HTTP API. When it fails,
// nothing it started is left running. Stop the App with Shutdown.
func Start(ctx context.Context, cfg Config, opts Options) (_ *App, err error) {
	if err := errors.Join(cfg.ValidateDatabase(), cfg.ValidateBroker(), cfg.ValidateRelay()); err != nil {
		return nil, err
	}
	if opts.HTTP {
		if err := cfg.ValidateHTTP(); err != nil {
			return nil, err
		}
	}
	cfg = cfg.withDefaults()
	a := &App{
		cfg:       cfg,
		log:       cfg.Logger,
		relayDone: make(chan struct{}),
		failed:    make(chan error, 3),
	}
	var ln, metricsLn net.Listener
	defer func() {
		if err != nil {
			if ln != nil {
				_ = ln.Close()
			}
			if metricsLn != nil {
				_ = metricsLn.Close()
			}
			_ = a.closeResources() // the start-up error says more
		}
	}()
	a.tracer = cfg.TracerProvider
	if a.tracer == nil {
		if a.tracer, a.stopTracing, err = newTracing(ctx, cfg.lookupEnv()); err != nil {
			return nil, err
		}
	}
	if a.DB, err = OpenDatabase(ctx, cfg); err != nil {
		return nil, err
	}
	if a.tracer != nil && a.DB.ordersStore != nil {
		a.DB.Orders = ordersvc.New(a.DB.ordersStore, ordersvc.Config{Tracer: a.tracer.Tracer(tracerName)})
	}
	if err := a.migrate(ctx); err != nil {
		return nil, err
	}
	if a.Broker, err = OpenBroker(ctx, cfg); err != nil {
		return nil, err
	}
	rc := cfg.Relay
	rc.Logger = cfg.Logger.With("component", "relay")
	if a.DB.Spec.Kind == SQLite && rc.PublishTimeout == 0 {
		// A SQLite claim holds the write lock while its batch is published;
		// keep that well under the busy timeout so API writes never fail
		// because a broker is slow to acknowledge.
		rc.PublishTimeout = sqlitestore.BusyTimeout / 2
	}
	events := newEventCounter()
	rc.OnOutcome = events.observe
	if a.tracer != nil {
		rc.Tracer = a.tracer.Tracer(tracerName)
	}
	src := a.DB.Source
	if cfg.RelayMode == RelayModeCDC {
		if a.CDC, err = OpenCDC(a.DB, cfg); err != nil {
			return nil, err
		}
		// Clear errors for wal_level and the REPLICATION attribute first.
		if err := a.CDC.Setup(ctx); err != nil {
			return nil, err
		}
		src = a.CDC
		rc.PollOnly = false // the stream is the source's Listen
	}
	a.Relay = outbox.NewRelay(src, a.Broker.Publisher, rc)

	if opts.HTTP {
		a.live = webui.NewLive(a.Relay)
		reg := newRegistry(a.DB.Admin, a.Relay.Counters, events, cfg.Version)
		if a.CDC != nil {
			reg.MustRegister(slotCollector{a.CDC})
		}
		handler, err := newHandler(a, reg)
		if err != nil {
			return nil, err
		}
		var lc net.ListenConfig
		if ln, err = lc.Listen(ctx, "tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listen on --http-addr %s: %w", cfg.HTTPAddr, err)
		}
		a.url = "http://" + ln.Addr().String()
		// Beyond the cap, connections wait in the listen backlog until one
		// closes, so that a flood of them cannot exhaust the process's
		// file descriptors or memory.
		ln = netutil.LimitListener(ln, cfg.maxConnections())
		a.httpServer = newHTTPServer(handler, cfg.Logger)
		// The UI's event streams never go idle: end them when the server stops.
		a.httpServer.RegisterOnShutdown(a.live.Close)
		if cfg.MetricsAddr != "" {
			if metricsLn, err = lc.Listen(ctx, "tcp", cfg.MetricsAddr); err != nil {
				return nil, fmt.Errorf("listen on --metrics-addr %s: %w", cfg.MetricsAddr, err)
			}
			a.metricsURL = "http://" + metricsLn.Addr().String()
			a.metricsServer = newHTTPServer(metricsHandler(reg), cfg.Logger)
		}
	}

	// The relay's context is its own: a stop signal first stops the HTTP
	// API, then ends the relay (see Shutdown).
	relayCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.relayCancel = cancel
	go func() {
		defer close(a.relayDone)
		if a.live != nil {
			var wg sync.WaitGroup
			wg.Go(func() { a.live.Run(relayCtx) })
			defer wg.Wait()
		}
		if err := a.Relay.Run(relayCtx); err != nil {
			a.failed <- fmt.Errorf("relay: %w", err)
		}
	}()
	if a.httpServer != nil {
		srv, l := a.httpServer, ln
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				a.failed <- fmt.Errorf("http server: %w", err)
			}
		}()
	}
	if a.metricsServer != nil {
		srv, l := a.metricsServer, metricsLn
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				a.failed <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	a.logStarted()
	return a, nil
}

// migrate applies the migrations, or with NoMigrate checks that none is
// pending.
func (a *App) migrate(ctx context.Context) error {
	if !a.cfg.NoMigrate {
		return a.DB.Migrate(ctx)
	}
	ms, err := a.DB.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	if pending := migration.Pending(ms); pending > 0 {
		return fmt.Errorf("the database schema is not up to date (%d migrations pending) and --no-migrate is set; run herald migrate", pending)
	}
	return nil
}

func (a *App) logStarted() {
	attrs := []any{"db", a.DB.Spec.Kind.String(), "broker", a.Broker.Spec.Kind.String()}
	if a.Broker.ClientURL != "" {
		attrs = append(attrs, "nats", RedactURL(a.Broker.ClientURL))
	}
	if a.httpServer == nil {
		a.log.Info("herald relay running", attrs...)
		return
	}
	msg := "herald listening on " + a.url
	if a.cfg.APIToken == "" && a.cfg.AdminToken == "" {
		msg += " (no --api-token or --admin-token set: loopback only, no authentication)"
	}
	if a.metricsServer != nil {
		attrs = append(attrs, "metrics", a.metricsURL+"/metrics")
	}
	a.log.Info(msg, attrs...)
}

// URL is the base URL of the HTTP API, "" without it.
func (a *App) URL() string { return a.url }

// MetricsURL is the base URL of the --metrics-addr listener (it serves
// /metrics), "" when /metrics is on the API's listener or there is no API.
func (a *App) MetricsURL() string { return a.metricsURL }

// Failed delivers the error of a component that stopped on its own (the
// HTTP server could not serve). The App should then be shut down.
func (a *App) Failed() <-chan error { return a.failed }

// Shutdown stops gracefully: the HTTP server (then the metrics server) stops
// accepting connections and waits up to cfg.ShutdownTimeout for requests in
// flight; then the relay's context ends and its batch in flight is
// finished; then the publisher, the database and, last, the embedded NATS
// server are closed. ctx bounds the
// wait for the relay. It is safe to call twice.
func (a *App) Shutdown(ctx context.Context) error {
	a.shutdownOnce.Do(func() {
		var errs []error
		for _, srv := range []*http.Server{a.httpServer, a.metricsServer} {
			if srv == nil {
				continue
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
			if err := srv.Shutdown(sctx); err != nil {
				a.log.Warn("http: requests still in flight at the shutdown timeout; closing their connections", "err", err)
				_ = srv.Close()
			}
			cancel()
		}
		a.relayCancel()
		select {
		case <-a.relayDone:
		case <-ctx.Done():
			a.log.Warn("relay: batch still in flight at the shutdown deadline; its events will be published again")
			errs = append(errs, fmt.Errorf("relay did not stop: %w", ctx.Err()))
		}
		errs = append(errs, a.closeResources())
		a.shutdownErr = errors.Join(errs...)
		c := a.Relay.Counters()
		a.log.Info("herald stopped", "published", c.Published, "retried", c.Retried, "dead_lettered", c.DeadLettered)
	})
	return a.shutdownErr
}

// closeResources closes the publisher, the database and the embedded NATS
// server, in that order.
func (a *App) closeResources() error {
	var errs []error
	if a.Broker != nil && a.Broker.Publisher != nil {
		errs = append(errs, a.Broker.Publisher.Close())
	}
	if a.DB != nil {
		errs = append(errs, a.DB.Close())
	}
	if a.Broker != nil && a.Broker.embedded != nil {
		a.Broker.embedded.Shutdown()
	}
	if a.stopTracing != nil {
		// The spans of the last requests and batches are flushed last.
		ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		if err := a.stopTracing(ctx); err != nil {
			a.log.Warn("tracing: spans not exported at shutdown", "err", err)
		}
		cancel()
	}
	return errors.Join(errs...)
}

// Run starts the App, calls started (if not nil) once it is serving, waits
// until ctx ends or a component fails, and shuts down. It returns nil after
// a graceful stop on ctx.
func Run(ctx context.Context, cfg Config, opts Options, started func(*App)) error {
	a, err := Start(ctx, cfg, opts)
	if err != nil {
		if ctx.Err() != nil && !IsUsageError(err) {
			return nil // stopped while starting: nothing runs, nothing is lost
		}
		return err
	}
	if started != nil {
		started(a)
	}
	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("stopping: finishing requests and the batch in flight")
	case runErr = <-a.failed:
		a.log.Error("stopping after a failure", "err", runErr)
	}
	// The relay's batch in flight is bounded by its publish timeout (twice,
	// for the acks and the bookkeeping); wait a little longer than that.
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout+2*publishTimeout(a.cfg.Relay)+10*time.Second)
	defer cancel()
	return errors.Join(runErr, a.Shutdown(sctx))
}

func publishTimeout(r outbox.RelayConfig) time.Duration {
	if r.PublishTimeout > 0 {
		return r.PublishTimeout
	}
	return 30 * time.Second
}
