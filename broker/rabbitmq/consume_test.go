package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/inbox/inboxtest"
)

// A consumer with manual acknowledgements on the machine's RabbitMQ feeds
// an inbox: every event applied once and in order, a failed handler's
// message requeued, an invalid one rejected, a restarted consumer resuming.
func TestConsumeIntoInbox(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	stop, err := rabbitmq.Consume(testCtx(t), ns.cfg, rabbitmq.ConsumeConfig{Queue: ns.queue}, // declares the queue
		func(context.Context, broker.Delivery) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	stop()
	conn, err := amqp.Dial(ns.cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	inboxtest.RunConsumer(t, inboxtest.Broker{
		Invalid: true,
		Publish: func(t *testing.T, bodies [][]byte) {
			for _, b := range bodies {
				if err := ch.PublishWithContext(testCtx(t), ns.cfg.Exchange, "thing.changed", false, false,
					amqp.Publishing{Body: b, DeliveryMode: amqp.Persistent}); err != nil {
					t.Fatal(err)
				}
			}
		},
		Start: func(t *testing.T, _ string, handle func(context.Context, []byte) error) func() {
			stop, err := rabbitmq.Consume(testCtx(t), ns.cfg, rabbitmq.ConsumeConfig{
				Queue: ns.queue, Workers: 4, RetryDelay: 10 * time.Millisecond,
			}, func(ctx context.Context, d broker.Delivery) error { return handle(ctx, d.Body) })
			if err != nil {
				t.Fatal(err)
			}
			return stop
		},
	})
}
