package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/outbox"
)

// target is the Herald the full mode drives: its API and where its events
// can be read.
type target struct {
	url      string    // base URL of the HTTP API
	ep       *endpoint // where the events go and are read back
	database string    // "sqlite", "postgres", or "remote"
	broker   string    // "embedded", "nats", "kafka", "rabbitmq", "redis", "webhook"
	relay    func() outbox.RelayCounters
	close    cleanups
}

func (t *target) Close() { t.close.run() }

// openTarget returns the Herald of cfg: the running one at cfg.URL, or one
// started in the process on free ports. An in-process Herald on embedded
// defaults is herald serve itself (app.Start) with its data in a temporary
// directory. With --broker nats:// it is assembled from the same parts
// (app.OpenDatabase, the relay, httpapi) but publishes to a stream of its
// own instead of ORDERS, which app.Config cannot name, so that the
// machine's ORDERS stream is not disturbed.
func openTarget(ctx context.Context, cfg Config) (_ *target, err error) {
	bspec, err := app.ParseBrokerURL(cfg.App.BrokerURL)
	if err != nil {
		return nil, err
	}
	// A running Herald is read where it publishes (the stream herald serve
	// publishes to, the orders' names on other brokers); a Herald the bench
	// assembles itself gets a namespace of its own instead.
	t := &target{broker: bspec.Kind.String()}
	if cfg.URL != "" {
		t.url, t.database = cfg.URL, "remote"
		switch bspec.Kind {
		case app.BrokerEmbedded:
			addr := cfg.App.EmbeddedNATSAddr
			if addr == "" {
				addr = app.DefaultEmbeddedNATSAddr
			}
			t.ep = natsReader("nats://"+addr, app.NATSConfig(nil))
		case app.BrokerNATS:
			t.ep = natsReader(bspec.URL, app.NATSConfig(nil))
		default:
			if t.ep, err = remoteReader(cfg.App, bspec.Kind); err != nil {
				return nil, err
			}
		}
		return t, nil
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	dir, err := os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return nil, err
	}
	t.close.add(func() { _ = os.RemoveAll(dir) })
	acfg := cfg.App
	acfg.DataDir = dir
	acfg.HTTPAddr = "127.0.0.1:0"
	acfg.Relay = relayConfig(acfg.Relay)
	acfg.Logger = quietLogger(cfg.Logger)
	acfg.EventLog = nil
	if acfg.ShutdownTimeout <= 0 {
		acfg.ShutdownTimeout = 10 * time.Second
	}
	dspec, err := app.ParseDatabaseURL(acfg.DatabaseURL, dir)
	if err != nil {
		return nil, err
	}
	t.database = dspec.Kind.String()
	if dspec.Kind == app.Postgres && cfg.FreshSchema {
		u, _, drop, err := freshSchema(ctx, dspec.URL)
		if err != nil {
			return nil, err
		}
		t.close.add(drop)
		acfg.DatabaseURL = u
	}

	if bspec.Kind == app.BrokerEmbedded {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		acfg.EmbeddedNATSAddr = fmt.Sprintf("127.0.0.1:%d", port)
		a, err := app.Start(ctx, acfg, app.Options{HTTP: true})
		if err != nil {
			return nil, err
		}
		t.close.add(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = a.Shutdown(ctx)
		})
		t.url, t.ep, t.relay = a.URL(), natsReader(a.Broker.ClientURL, app.NATSConfig(nil)), a.Relay.Counters
		return t, nil
	}
	return t, t.assemble(ctx, acfg, &broker{kind: bspec.Kind, url: bspec.URL})
}

// assemble runs the parts of herald serve against the broker br, on a
// namespace of the bench's own (a stream, topic, exchange and queue, or the
// bench's webhook receiver).
func (t *target) assemble(ctx context.Context, acfg app.Config, br *broker) error {
	db, err := app.OpenDatabase(ctx, acfg)
	if err != nil {
		return err
	}
	t.close.add(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	ep, err := newEndpoint(ctx, br)
	if err != nil {
		return err
	}
	t.ep = ep
	t.close.add(ep.Close)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	pub, err := ep.connect(cctx)
	cancel()
	if err != nil {
		return err
	}
	t.close.add(func() { _ = pub.Close() })
	rc := acfg.Relay
	rc.Logger = acfg.Logger.With("component", "relay")
	relay := outbox.NewRelay(db.Source, pub, rc)
	t.relay = relay.Counters
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Run(rctx)
	}()
	t.close.add(func() {
		stop()
		<-done
	})

	handler := httpapi.New(httpapi.Config{
		Orders:        db.Orders,
		Outbox:        db.Admin,
		RelayCounters: relay.Counters,
		Checks:        []httpapi.Check{{Name: "database", Required: true, Probe: db.Ping}},
		Logger:        acfg.Logger.With("component", "http"),
		APIToken:      acfg.APIToken,
		AdminToken:    acfg.AdminToken,
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.close.add(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = srv.Close()
		}
	})
	t.url = "http://" + ln.Addr().String()
	return nil
}

// freePort asks the system for a free TCP port on the loopback interface.
func freePort() (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// quietLogger drops the in-process Herald's records below warning, which
// would break up the progress display, unless l takes debug records.
func quietLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	h := l.Handler()
	if h.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(minLevel{Handler: h, min: slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{Handler: m.Handler.WithAttrs(a), min: m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: m.Handler.WithGroup(name), min: m.min}
}
