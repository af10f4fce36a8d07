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
// again, an invalid one terminated, a restarted consumer resuming. "one"
// is Consume, a message at a time; "batch" is ConsumeBatch into one inbox
// transaction per batch.
func TestConsumeIntoInbox(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "one", true: "batch"}[batch], func(t *testing.T) {
			t.Parallel()
			url := localURL()
			cfg := uniqueConfig(t, url)
			connect(t, url, cfg) // creates the stream
			nc := dial(t, url)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			b := inboxtest.Broker{
				Invalid: true,
				Publish: func(t *testing.T, bodies [][]byte) {
					for _, b := range bodies {
						// No message id: the duplicates must reach the inbox.
						if _, err := js.Publish(testCtx(t), cfg.Subject("thing.changed"), b); err != nil {
							t.Fatal(err)
						}
					}
				},
			}
			ccfg := natsjs.ConsumeConfig{Workers: 4, RetryDelay: 10 * time.Millisecond}
			if batch {
				b.StartBatch = func(t *testing.T, name string, handle func(context.Context, [][]byte) []error) func() {
					ccfg.Durable, ccfg.Workers, ccfg.Batch = name, 2, 16
					c, err := natsjs.ConsumeBatch(testCtx(t), nc, cfg, ccfg, func(ctx context.Context, ds []natsjs.Delivery) []error {
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
				}
			} else {
				b.Start = func(t *testing.T, name string, handle func(context.Context, []byte) error) func() {
					ccfg.Durable = name
					c, err := natsjs.Consume(testCtx(t), nc, cfg, ccfg,
						func(ctx context.Context, d natsjs.Delivery) error { return handle(ctx, d.Body) })
					if err != nil {
						t.Fatal(err)
					}
					return c.Stop
				}
			}
			inboxtest.RunConsumer(t, b)
		})
	}
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
