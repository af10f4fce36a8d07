package rabbitmq_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// BenchmarkPublish publishes batches of 500 events of distinct aggregates,
// as the relay does with its default batch size, two ways: through the
// Publisher, and through the tightest plain loop on amqp091 with the same
// guarantee (one confirm-mode channel, persistent mandatory messages with
// the same properties, every confirm of the batch awaited, returns
// checked). Their ns/op ratio is the adapter's overhead. Each sub-benchmark
// publishes to a fresh exchange bound to a fresh queue: durable (the
// broker writes every message to disk before confirming it, as in
// production) or transient (in memory only, which leaves the client's own
// costs in sight).
//
//	go test -run '^$' -bench Publish -benchtime 200x -count 3 ./broker/rabbitmq/
func BenchmarkPublish(b *testing.B) {
	const batch = 500
	msgs := publishertest.Batch(b, "bench", batch, 1)
	for _, durable := range []bool{true, false} {
		name := "durable"
		if !durable {
			name = "transient"
		}
		b.Run(name+"/publisher", func(b *testing.B) {
			ns := benchNamespace(b, durable)
			p := connect(b, ns.cfg)
			ctx := testCtx(b)
			b.ReportAllocs()
			for b.Loop() {
				for i, err := range p.Publish(ctx, msgs) {
					if err != nil {
						b.Fatalf("message %d: %v", i, err)
					}
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(name+"/plain", func(b *testing.B) {
			ns := benchNamespace(b, durable)
			plainLoop(b, ns, msgs)
		})
	}
}

// benchNamespace is a fresh exchange bound to a fresh queue, bounded so
// that the broker's work stays the same however long the benchmark runs.
func benchNamespace(b *testing.B, durable bool) namespace {
	ns := newNamespace(b)
	ch := ns.raw(b)
	if err := ch.ExchangeDeclare(ns.cfg.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare(ns.queue, durable, false, false, false, amqp.Table{"x-max-length": int32(100_000)}); err != nil {
		b.Fatal(err)
	}
	if err := ch.QueueBind(ns.queue, "#", ns.cfg.Exchange, false, nil); err != nil {
		b.Fatal(err)
	}
	return ns
}

// plainLoop is the benchmark's baseline: amqp091 used directly.
func plainLoop(b *testing.B, ns namespace, msgs []outbox.Message) {
	batch := len(msgs)
	conn, err := amqp.Dial(ns.cfg.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, batch))
	dcs := make([]*amqp.DeferredConfirmation, batch)
	b.ReportAllocs()
	for b.Loop() {
		for i := range msgs {
			m := &msgs[i]
			dcs[i], err = ch.PublishWithDeferredConfirm(ns.cfg.Exchange, m.Type, true, false, amqp.Publishing{
				ContentType:  rabbitmq.ContentType,
				DeliveryMode: amqp.Persistent,
				MessageId:    m.ID.String(),
				Timestamp:    m.CreatedAt,
				Type:         m.Type,
				Headers:      amqp.Table{"traceparent": m.Headers["traceparent"]},
				Body:         m.Body,
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		for i, dc := range dcs {
			if !dc.Wait() {
				b.Fatalf("message %d nacked", i)
			}
		}
		select {
		case r := <-returns:
			b.Fatalf("message %s returned", r.MessageId)
		default:
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
}
