package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/logpub"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
)

// Broker is an open broker: the publisher the relay sends to and, for the
// embedded broker, the NATS server running in the process.
type Broker struct {
	Spec      BrokerSpec
	Publisher outbox.Publisher
	// ClientURL is the NATS URL consumers connect to ("" for the log broker).
	ClientURL string

	nats     *natsjs.Publisher
	embedded *embeddednats.Server
	dialed   *broker.Dialed // an external broker (Kafka, RabbitMQ, Redis, webhook)
	unlock   func()         // releases the data directory (embedded)
}

// OpenBroker opens the broker of cfg.BrokerURL: for embedded, it starts a
// NATS server on cfg.EmbeddedNATSAddr with its store under
// <DataDir>/nats and connects to it.
func OpenBroker(ctx context.Context, cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	spec, err := ParseBrokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	b := &Broker{Spec: spec}
	switch spec.Kind {
	case BrokerLog:
		b.Publisher = logpub.New(cfg.EventLog)
		return b, nil
	case BrokerEmbedded:
		host, port, err := splitHostPort(cfg.EmbeddedNATSAddr)
		if err != nil {
			return nil, err
		}
		unlock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		storeDir := filepath.Join(cfg.DataDir, "nats")
		if err := os.MkdirAll(storeDir, 0o750); err != nil {
			unlock()
			return nil, fmt.Errorf("create the embedded NATS store: %w", err)
		}
		srv, err := embeddednats.Start(embeddednats.Config{
			Host:     host,
			Port:     port,
			StoreDir: storeDir,
			// The server's notices (a start-up banner among them) are
			// debug-level detail for Herald's log.
			Logger: slog.New(atLeast(cfg.Logger.Handler(), slog.LevelWarn)).With("component", "embedded-nats"),
		})
		if err != nil {
			unlock()
			return nil, fmt.Errorf("start the embedded NATS server (--embedded-nats-addr %s): %w", cfg.EmbeddedNATSAddr, err)
		}
		b.embedded, b.unlock = srv, unlock
		b.ClientURL = srv.ClientURL()
	case BrokerNATS:
		b.ClientURL = spec.URL
	default:
		d, err := openExternal(spec, cfg)
		if err != nil {
			return nil, err
		}
		b.dialed, b.Publisher = d, d
		return b, nil
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pub, err := natsjs.Connect(cctx, b.ClientURL, NATSConfig(cfg.Logger.With("component", "natsjs")))
	if err != nil {
		if b.embedded != nil {
			b.embedded.Shutdown()
			b.unlock()
		}
		return nil, err
	}
	b.nats = pub
	b.Publisher = pub
	return b, nil
}

// splitHostPort splits a checked host:port.
func splitHostPort(addr string) (string, int, error) {
	if err := checkListenAddr("--embedded-nats-addr", addr, 1); err != nil {
		return "", 0, err
	}
	host, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return host, port, nil
}

// errBrokerDisconnected is Ping's answer while NATS is unreachable.
var errBrokerDisconnected = errors.New("not connected to NATS")

// Ping reports whether the broker can take events now.
func (b *Broker) Ping(ctx context.Context) error {
	if b.dialed != nil {
		pub, err := b.dialed.Connected()
		if pub == nil {
			return err
		}
		if p, ok := pub.(interface{ Ping(context.Context) error }); ok {
			return p.Ping(ctx)
		}
		return nil
	}
	if b.nats == nil {
		return nil
	}
	if st := b.nats.Conn().Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w (%s)", errBrokerDisconnected, st)
	}
	return nil
}

// Close closes the publisher (waiting for publishes in flight), then stops
// the embedded NATS server, if any. It is safe to call twice.
func (b *Broker) Close() error {
	var err error
	if b.Publisher != nil {
		err = b.Publisher.Close()
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
	}
	if b.unlock != nil {
		b.unlock()
		b.unlock = nil
	}
	return err
}

// atLeast wraps h to drop records below min, unless h takes debug records
// (the user asked for everything).
func atLeast(h slog.Handler, minLevel slog.Level) slog.Handler {
	if h.Enabled(context.Background(), slog.LevelDebug) {
		return h
	}
	return levelFilter{Handler: h, min: minLevel}
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f levelFilter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelFilter{Handler: f.Handler.WithAttrs(attrs), min: f.min}
}

func (f levelFilter) WithGroup(name string) slog.Handler {
	return levelFilter{Handler: f.Handler.WithGroup(name), min: f.min}
}

// NATSConfig is the orders' stream and subjects on NATS JetStream (ORDERS,
// orders.<event type>), for the publisher and for readers of the stream.
func NATSConfig(logger *slog.Logger) natsjs.Config {
	return natsjs.Config{Stream: ordersvc.Stream, SubjectPrefix: ordersvc.SubjectPrefix, Logger: logger}
}
