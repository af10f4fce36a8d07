package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/inbox/inboxtest"
)

// A durable consumer on the machine's NATS server feeds an inbox: every
// event applied once and in order, a failed handler's message delivered
// again, an invalid one terminated, a restarted consumer resuming.
func TestConsumeIntoInbox(t *testing.T) {
	t.Parallel()
	url := localURL()
	cfg := uniqueConfig(t, url)
	connect(t, url, cfg) // creates the stream
	nc := dial(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	inboxtest.RunConsumer(t, inboxtest.Broker{
		Invalid: true,
		Publish: func(t *testing.T, bodies [][]byte) {
			for _, b := range bodies {
				// No message id: the duplicates must reach the inbox.
				if _, err := js.Publish(testCtx(t), cfg.Subject("thing.changed"), b); err != nil {
					t.Fatal(err)
				}
			}
		},
		Start: func(t *testing.T, name string, handle func(context.Context, []byte) error) func() {
			c, err := natsjs.Consume(testCtx(t), nc, cfg, natsjs.ConsumeConfig{
				Durable: name, Workers: 4, RetryDelay: 10 * time.Millisecond,
			}, func(ctx context.Context, d natsjs.Delivery) error { return handle(ctx, d.Body) })
			if err != nil {
				t.Fatal(err)
			}
			return c.Stop
		},
	})
}

func TestConsumeRefusesBadNames(t *testing.T) {
	t.Parallel()
	nc := dial(t, localURL())
	for _, name := range []string{"", "a.b", "a b", "a*"} {
		if _, err := natsjs.Consume(testCtx(t), nc, natsjs.Config{}, natsjs.ConsumeConfig{Durable: name},
			func(context.Context, natsjs.Delivery) error { return nil }); err == nil {
			t.Errorf("durable name %q accepted", name)
		}
	}
}

// The same, with the messages handed over in batches to one inbox
// transaction each.
func TestConsumeBatchIntoInbox(t *testing.T) {
	t.Parallel()
	url := localURL()
	cfg := uniqueConfig(t, url)
	connect(t, url, cfg) // creates the stream
	nc := dial(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	inboxtest.RunConsumer(t, inboxtest.Broker{
		Invalid: true,
		Publish: func(t *testing.T, bodies [][]byte) {
			for _, b := range bodies {
				if _, err := js.Publish(testCtx(t), cfg.Subject("thing.changed"), b); err != nil {
					t.Fatal(err)
				}
			}
		},
		StartBatch: func(t *testing.T, name string, handle func(context.Context, [][]byte) []error) func() {
			c, err := natsjs.ConsumeBatch(testCtx(t), nc, cfg, natsjs.ConsumeConfig{
				Durable: name, Workers: 2, Batch: 16, RetryDelay: 10 * time.Millisecond,
			}, func(ctx context.Context, ds []natsjs.Delivery) []error {
				bodies := make([][]byte, len(ds))
				for i, d := range ds {
					bodies[i] = d.Body
				}
				return handle(ctx, bodies)
			})
			if err != nil {
				t.Fatal(err)
			}
			return c.Stop
		},
	})
}
