package rabbitmq_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestSubscribeNew: without FromStart a subscription gets what is
// published after it started, filtered by type, and takes nothing from
// anyone else's queue.
func TestSubscribeNew(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.Queue = ns.queue
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "early", 2, 1))

	all := subscribe(t, cfg, broker.SubscribeOptions{})
	typed := subscribe(t, cfg, broker.SubscribeOptions{Types: []string{"order.created"}})
	created := publishertest.NewRecord("s-1", 1)
	created.Type = "order.created"
	msgs := append([]outbox.Message{publishertest.NewMessage(t, created)}, publishertest.Batch(t, "late", 2, 1)...)
	publishOK(t, p, msgs)

	for _, m := range msgs {
		d := publishertest.Next(t, all)
		if d.Err != nil || d.Event.ID != m.ID.String() || d.MsgID != m.ID.String() || d.Where != m.Type || d.Stored.IsZero() {
			t.Fatalf("delivery %+v, want event %s on %s", d, m.ID, m.Type)
		}
		if string(d.Body) != string(m.Body) {
			t.Fatalf("body %s, want %s", d.Body, m.Body)
		}
	}
	none(t, all)
	if d := publishertest.Next(t, typed); d.Event.ID != created.ID.String() {
		t.Fatalf("Types filter delivered %s (%s)", d.Event.ID, d.Where)
	}
	none(t, typed)

	// The events stayed in Config.Queue, all five.
	q, err := ns.raw(t).QueueDeclarePassive(ns.queue, true, false, false, false, nil)
	if err != nil || q.Messages != 5 {
		t.Fatalf("Config.Queue holds %d messages (%v), want 5", q.Messages, err)
	}
}

// TestSubscribeFromStart: FromStart consumes Config.Queue: what it held,
// then what arrives; a foreign message comes with Err set; what was read
// is gone from the queue.
func TestSubscribeFromStart(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	if _, err := rabbitmq.Subscribe(testCtx(t), cfg, broker.SubscribeOptions{FromStart: true}, func(broker.Delivery) {}); !errors.Is(err, rabbitmq.ErrFromStartNeedsQueue) {
		t.Fatalf("FromStart without a queue: %v, want ErrFromStartNeedsQueue", err)
	}
	cfg.Queue = ns.queue
	p := connect(t, cfg)
	early := publishertest.Batch(t, "early", 3, 1)
	publishOK(t, p, early)
	if err := ns.raw(t).Publish(cfg.Exchange, "junk", false, false, amqp.Publishing{Body: []byte("not json")}); err != nil {
		t.Fatal(err)
	}

	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true, Types: []string{"order.status_changed", "junk"}})
	for _, m := range early {
		if d := publishertest.Next(t, ch); d.Err != nil || d.Event.ID != m.ID.String() {
			t.Fatalf("delivery %+v, want %s", d, m.ID)
		}
	}
	if d := publishertest.Next(t, ch); d.Err == nil || string(d.Body) != "not json" || d.Where != "junk" {
		t.Fatalf("foreign message: %+v, want a parse error", d)
	}
	late := publishertest.Batch(t, "late", 2, 1)
	publishOK(t, p, late)
	for _, m := range late {
		if d := publishertest.Next(t, ch); d.Event.ID != m.ID.String() {
			t.Fatalf("delivery %s, want %s", d.Event.ID, m.ID)
		}
	}
	none(t, ch)
}

// TestSubscribeReconnects: a subscription whose connection the broker
// drops comes back by itself.
func TestSubscribeReconnects(t *testing.T) {
	t.Parallel()
	for _, opts := range []broker.SubscribeOptions{{}, {FromStart: true}} {
		t.Run(fmt.Sprintf("FromStart=%v", opts.FromStart), func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t)
			cfg := ns.cfg
			cfg.Queue = ns.queue
			p := connect(t, cfg)
			ch := subscribe(t, cfg, opts)
			publishOK(t, p, publishertest.Batch(t, "before", 1, 1))
			publishertest.Next(t, ch)
			ns.dropConnections(t, cfg.ConnectionName+" subscriber")

			// A private queue misses what is published before it is
			// declared anew: publish until an event gets through.
			deadline := time.Now().Add(20 * time.Second)
			for {
				after := publishertest.Batch(t, "after", 1, 1)
				publishOK(t, p, after)
				if receivedWithin(ch, after[0].ID.String(), 200*time.Millisecond) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("nothing delivered 20s after the connection was dropped")
				}
			}
		})
	}
}

// receivedWithin reports whether the event id arrives on ch within d.
func receivedWithin(ch <-chan broker.Delivery, id string, d time.Duration) bool {
	timeout := time.After(d)
	for {
		select {
		case got := <-ch:
			if got.MsgID == id {
				return true
			}
		case <-timeout:
			return false
		}
	}
}
