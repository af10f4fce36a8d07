package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
)

// externalBroker is a broker Herald reaches by URL through an adapter of
// package broker: how its URL is checked before anything starts, and how
// its settings are prepared (with the orders' names) into a connect
// function that the broker's availability alone can make fail.
type externalBroker struct {
	kind    BrokerKind
	parse   func(raw string) error
	prepare func(raw string, cfg Config) (connect func(ctx context.Context) (outbox.Publisher, error), err error)
	// subscribe reads the orders' events back (herald tail, herald check);
	// nil for a broker that cannot be read (webhook).
	subscribe func(ctx context.Context, raw string, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (stop func(), err error)
}

// externalBrokers are the brokers of URL schemes other than nats://.
var externalBrokers = map[string]externalBroker{
	"http":   webhookBroker,
	"https":  webhookBroker,
	"redis":  redisBroker,
	"rediss": redisBroker,
	"kafka":  kafkaBroker,
	"amqp":   rabbitBroker,
	"amqps":  rabbitBroker,
}

// readableBroker builds the externalBroker of an adapter that can be read
// back: parse is its ParseURL, name sets the orders' name (orders.events)
// on its Config when the URL's query does not set the setting key, and
// logger sets the Config's logger.
func readableBroker[C any, P outbox.Publisher](
	kind BrokerKind, key string,
	parse func(raw string) (C, error),
	name func(*C, string), logger func(*C, *slog.Logger),
	connect func(context.Context, C) (P, error),
	subscribe func(context.Context, C, broker.SubscribeOptions, func(broker.Delivery)) (func(), error),
) externalBroker {
	config := func(raw string, cfg Config) (C, error) {
		c, err := parse(raw)
		if err != nil {
			return c, err
		}
		if !hasSetting(raw, key) {
			name(&c, ordersvc.EventsName)
		}
		logger(&c, cfg.Logger.With("component", kind.String()))
		return c, nil
	}
	return externalBroker{
		kind: kind,
		parse: func(raw string) error {
			_, err := parse(raw)
			return err
		},
		prepare: func(raw string, cfg Config) (func(context.Context) (outbox.Publisher, error), error) {
			c, err := config(raw, cfg)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context) (outbox.Publisher, error) { return connect(ctx, c) }, nil
		},
		subscribe: func(ctx context.Context, raw string, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (func(), error) {
			c, err := config(raw, cfg)
			if err != nil {
				return nil, err
			}
			return subscribe(ctx, c, opts, fn)
		},
	}
}

var (
	rabbitBroker = readableBroker(BrokerRabbitMQ, "exchange", rabbitmq.ParseURL,
		func(c *rabbitmq.Config, n string) { c.Exchange = n }, func(c *rabbitmq.Config, l *slog.Logger) { c.Logger = l },
		rabbitmq.Connect, rabbitmq.Subscribe)
	kafkaBroker = readableBroker(BrokerKafka, "topic", kafka.ParseURL,
		func(c *kafka.Config, n string) { c.Topic = n }, func(c *kafka.Config, l *slog.Logger) { c.Logger = l },
		kafka.Connect, kafka.Subscribe)
	redisBroker = readableBroker(BrokerRedis, "stream", redisstream.ParseURL,
		func(c *redisstream.Config, n string) { c.Stream = n }, func(c *redisstream.Config, l *slog.Logger) { c.Logger = l },
		redisstream.Connect, redisstream.Subscribe)
)

// hasSetting reports whether a broker URL sets a query setting; where it
// does not, Herald gives the orders' name (orders.events) instead of the
// adapter's neutral default.
func hasSetting(raw, key string) bool {
	_, query, ok := strings.Cut(raw, "?") // the adapters read the query from the first '?'
	if !ok {
		return false
	}
	q, err := url.ParseQuery(query)
	return err == nil && q.Has(key)
}

// externalFor returns the adapter of an external broker kind.
func externalFor(kind BrokerKind) (externalBroker, bool) {
	for _, ext := range externalBrokers {
		if ext.kind == kind {
			return ext, true
		}
	}
	return externalBroker{}, false
}

// SubscribeBroker reads the orders' events back from the external broker
// of cfg.BrokerURL (not NATS, which herald tail reads itself).
func SubscribeBroker(ctx context.Context, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (stop func(), err error) {
	cfg = cfg.withDefaults()
	spec, err := ParseBrokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	ext, ok := externalFor(spec.Kind)
	if !ok || ext.subscribe == nil {
		return nil, usagef("the %s broker cannot be read back here", spec.Kind)
	}
	return ext.subscribe(ctx, spec.URL, cfg, opts, fn)
}

var webhookBroker = externalBroker{
	kind: BrokerWebhook,
	parse: func(raw string) error {
		_, err := webhook.ParseURL(raw)
		return err
	},
	prepare: func(raw string, cfg Config) (func(context.Context) (outbox.Publisher, error), error) {
		wcfg, err := webhook.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		if wcfg, err = wcfg.FromEnv(cfg.lookupEnv()); err != nil {
			return nil, err
		}
		wcfg.Logger = cfg.Logger.With("component", "webhook")
		pub, err := webhook.New(wcfg) // connects nothing: errors are the settings'
		if err != nil {
			return nil, err
		}
		return func(context.Context) (outbox.Publisher, error) { return pub, nil }, nil
	},
}

// lookupEnv is how the brokers' settings that live in the environment
// (the webhook's secrets) are read.
func (c Config) lookupEnv() func(string) (string, bool) {
	if c.LookupEnv != nil {
		return c.LookupEnv
	}
	return os.LookupEnv
}

// openExternal connects to an external broker in the background (see
// broker.Dial): a broker that is down at start does not stop Herald, whose
// outbox keeps the events until it is reachable. Settings the adapter
// refuses fail at once.
func openExternal(spec BrokerSpec, cfg Config) (*broker.Dialed, error) {
	ext, ok := externalFor(spec.Kind)
	if !ok {
		return nil, fmt.Errorf("no adapter for the %s broker", spec.Kind)
	}
	connect, err := ext.prepare(spec.URL, cfg)
	if err != nil {
		return nil, fmt.Errorf("--broker %s: %w", RedactURL(spec.URL), err)
	}
	return broker.Dial(func(ctx context.Context) (outbox.Publisher, error) {
		cctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		return connect(cctx)
	}, cfg.Logger.With("component", spec.Kind.String())), nil
}
