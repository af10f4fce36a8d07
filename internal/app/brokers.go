package app

import (
	"context"
	"fmt"
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

var rabbitBroker = externalBroker{
	kind: BrokerRabbitMQ,
	parse: func(raw string) error {
		_, err := rabbitmq.ParseURL(raw)
		return err
	},
	prepare: func(raw string, cfg Config) (func(context.Context) (outbox.Publisher, error), error) {
		rcfg, err := rabbitConfig(raw, cfg)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (outbox.Publisher, error) { return rabbitmq.Connect(ctx, rcfg) }, nil
	},
	subscribe: func(ctx context.Context, raw string, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (func(), error) {
		rcfg, err := rabbitConfig(raw, cfg)
		if err != nil {
			return nil, err
		}
		return rabbitmq.Subscribe(ctx, rcfg, opts, fn)
	},
}

func rabbitConfig(raw string, cfg Config) (rabbitmq.Config, error) {
	rcfg, err := rabbitmq.ParseURL(raw)
	if err != nil {
		return rcfg, err
	}
	if !hasSetting(raw, "exchange") {
		rcfg.Exchange = ordersvc.EventsName
	}
	rcfg.Logger = cfg.Logger.With("component", "rabbitmq")
	return rcfg, nil
}

var kafkaBroker = externalBroker{
	kind: BrokerKafka,
	parse: func(raw string) error {
		_, err := kafka.ParseURL(raw)
		return err
	},
	prepare: func(raw string, cfg Config) (func(context.Context) (outbox.Publisher, error), error) {
		kcfg, err := kafkaConfig(raw, cfg)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (outbox.Publisher, error) { return kafka.Connect(ctx, kcfg) }, nil
	},
	subscribe: func(ctx context.Context, raw string, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (func(), error) {
		kcfg, err := kafkaConfig(raw, cfg)
		if err != nil {
			return nil, err
		}
		return kafka.Subscribe(ctx, kcfg, opts, fn)
	},
}

func kafkaConfig(raw string, cfg Config) (kafka.Config, error) {
	kcfg, err := kafka.ParseURL(raw)
	if err != nil {
		return kcfg, err
	}
	if !hasSetting(raw, "topic") {
		kcfg.Topic = ordersvc.EventsName
	}
	kcfg.Logger = cfg.Logger.With("component", "kafka")
	return kcfg, nil
}

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

var redisBroker = externalBroker{
	kind: BrokerRedis,
	parse: func(raw string) error {
		_, err := redisstream.ParseURL(raw)
		return err
	},
	prepare: func(raw string, cfg Config) (func(context.Context) (outbox.Publisher, error), error) {
		rcfg, err := redisConfig(raw, cfg)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (outbox.Publisher, error) { return redisstream.Connect(ctx, rcfg) }, nil
	},
	subscribe: func(ctx context.Context, raw string, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (func(), error) {
		rcfg, err := redisConfig(raw, cfg)
		if err != nil {
			return nil, err
		}
		return redisstream.Subscribe(ctx, rcfg, opts, fn)
	},
}

func redisConfig(raw string, cfg Config) (redisstream.Config, error) {
	rcfg, err := redisstream.ParseURL(raw)
	if err != nil {
		return rcfg, err
	}
	if !hasSetting(raw, "stream") {
		rcfg.Stream = ordersvc.EventsName
	}
	rcfg.Logger = cfg.Logger.With("component", "redis")
	return rcfg, nil
}

// SubscribeBroker reads the orders' events back from the external broker
// of cfg.BrokerURL (not NATS, which herald tail reads itself).
func SubscribeBroker(ctx context.Context, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (stop func(), err error) {
	cfg = cfg.withDefaults()
	spec, err := ParseBrokerURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	for _, ext := range externalBrokers {
		if ext.kind == spec.Kind {
			if ext.subscribe == nil {
				return nil, usagef("the %s broker cannot be read back", spec.Kind)
			}
			return ext.subscribe(ctx, spec.URL, cfg, opts, fn)
		}
	}
	return nil, usagef("--broker %s cannot be read back here", spec.Kind)
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
	for _, ext := range externalBrokers {
		if ext.kind != spec.Kind {
			continue
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
	return nil, fmt.Errorf("no adapter for the %s broker", spec.Kind)
}
