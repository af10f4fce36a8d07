package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/internal/app"
)

// eventReader reads the orders' events back from one broker.
type eventReader struct {
	name string
	// subscribe delivers what the broker gets from now on (or, in a
	// namespace of the test's own, from its start) to fn until stop.
	subscribe func(ctx context.Context, fn func(broker.Delivery)) (stop func(), err error)
	// where reports whether the broker put the event where it belongs
	// (d.Where, in the broker's own terms).
	where func(d broker.Delivery) bool
}

// brokerTarget is a broker ready for a herald process: its --broker URL,
// the environment it needs, and how the test reads it back.
type brokerTarget struct {
	url    string
	env    []string
	reader eventReader
}

// e2eBrokers are the brokers the PostgreSQL end-to-end test runs on, each
// in a namespace (topic, exchange and queue, stream, endpoint) of the
// test's own, removed at the end.
var e2eBrokers = []struct {
	name  string
	setUp func(t *testing.T) brokerTarget
}{
	{"nats", func(*testing.T) brokerTarget {
		const url = "nats://127.0.0.1:4222"
		return brokerTarget{url: url, reader: natsReader(url)}
	}},
	{"kafka", setUpKafka},
	{"rabbitmq", setUpRabbitMQ},
	{"redis", setUpRedis},
	{"webhook", setUpWebhook},
}

// uniqueName is a namespace of the test's own on a shared broker.
func uniqueName(t *testing.T) string {
	return fmt.Sprintf("herald-e2e-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}

// natsReader reads the orders' subjects on the NATS server at url, from
// now on (the stream is shared). A message without the CloudEvents
// content type is reported where it was put, so that where refuses it.
func natsReader(url string) eventReader {
	return eventReader{
		name: url,
		subscribe: func(ctx context.Context, fn func(broker.Delivery)) (func(), error) {
			nc, err := nats.Connect(url)
			if err != nil {
				return nil, err
			}
			stop, err := natsjs.Subscribe(ctx, nc, app.NATSConfig(nil), natsjs.SubscribeOptions{DeliverNew: true}, func(d natsjs.Delivery) {
				bd := broker.Delivery{Event: d.Event, Err: d.Err, Body: d.Body, Where: d.Subject, MsgID: d.Header.Get("Nats-Msg-Id")}
				if ct := d.Header.Get("Content-Type"); ct != natsjs.ContentType {
					bd.Where = d.Subject + " with Content-Type " + ct
				}
				fn(bd)
			})
			if err != nil {
				nc.Close()
				return nil, err
			}
			return func() { stop(); nc.Close() }, nil
		},
		where: func(d broker.Delivery) bool { return d.Where == "orders."+d.Event.Type },
	}
}

// brokerReader reads the events back through app.SubscribeBroker, as
// herald tail does, from the start of the test's own namespace.
func brokerReader(url string, where func(d broker.Delivery) bool) eventReader {
	return eventReader{
		name: app.RedactURL(url),
		subscribe: func(ctx context.Context, fn func(broker.Delivery)) (func(), error) {
			return app.SubscribeBroker(ctx, app.Config{BrokerURL: url}, broker.SubscribeOptions{FromStart: true}, fn)
		},
		where: where,
	}
}

// setUpKafka starts franz-go's in-process kfake cluster (no Kafka server
// runs here) of three brokers; herald connects to its loopback addresses.
// Events are keyed by order, so an order's events share a partition.
func setUpKafka(t *testing.T) brokerTarget {
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	topic := uniqueName(t)
	url := "kafka://" + strings.Join(c.ListenAddrs(), ",") + "?topic=" + topic
	return brokerTarget{url: url, reader: brokerReader(url, func(d broker.Delivery) bool {
		return strings.HasPrefix(d.Where, topic+"/")
	})}
}

// setUpRabbitMQ uses the machine's RabbitMQ with an exchange and a queue
// of the test's own, deleted at the end. The routing key is the type.
func setUpRabbitMQ(t *testing.T) brokerTarget {
	name := uniqueName(t)
	t.Cleanup(func() {
		conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		defer func() { _ = conn.Close() }()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		if _, err := ch.QueueDelete(name, false, false, false); err != nil {
			t.Errorf("delete the queue: %v", err)
		}
		if err := ch.ExchangeDelete(name, false, false); err != nil {
			t.Errorf("delete the exchange: %v", err)
		}
	})
	url := "amqp://guest:guest@127.0.0.1:5672/?exchange=" + name + "&queue=" + name
	return brokerTarget{url: url, reader: brokerReader(url, func(d broker.Delivery) bool {
		return d.Where == d.Event.Type
	})}
}

// setUpRedis uses the machine's Redis with a stream of the test's own,
// deleted at the end.
func setUpRedis(t *testing.T) brokerTarget {
	stream := uniqueName(t)
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer func() { _ = rdb.Close() }()
		if err := rdb.Del(context.Background(), stream).Err(); err != nil {
			t.Errorf("delete the stream: %v", err)
		}
	})
	url := "redis://127.0.0.1:6379/0?stream=" + stream
	return brokerTarget{url: url, reader: brokerReader(url, func(d broker.Delivery) bool {
		return d.Where != "" && d.Where != "0-0" // the entry id
	})}
}

// setUpWebhook starts a webhook.Receiver in the test process; herald
// signs its deliveries with HERALD_WEBHOOK_SECRET, which the receiver
// verifies. Deliveries go to the path of the URL.
func setUpWebhook(t *testing.T) brokerTarget {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	text := webhook.SecretPrefix + base64.StdEncoding.EncodeToString(key)
	secret, err := webhook.ParseSecret(text)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	hub := &fanout{}
	srv := httptest.NewServer(&webhook.Receiver{Verifier: verifier, Deliver: func(_ context.Context, d broker.Delivery) error {
		hub.deliver(d)
		return nil
	}})
	t.Cleanup(srv.Close)
	const path = "/hooks/herald"
	return brokerTarget{
		url: srv.URL + path,
		env: []string{webhook.EnvSecret + "=" + text},
		reader: eventReader{
			name:      "webhooks to " + srv.URL + path,
			subscribe: hub.subscribe,
			where:     func(d broker.Delivery) bool { return d.Where == path },
		},
	}
}

// fanout hands the receiver's deliveries to the current subscriber; the
// receiver answers 200 to what arrives while no one subscribes.
type fanout struct {
	mu sync.Mutex
	fn func(broker.Delivery)
}

func (f *fanout) deliver(d broker.Delivery) {
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	if fn != nil {
		fn(d)
	}
}

func (f *fanout) subscribe(_ context.Context, fn func(broker.Delivery)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fn = fn
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.fn = nil
	}, nil
}
