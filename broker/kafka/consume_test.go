package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/inboxtest"
)

// A consumer group on a kfake cluster feeds an inbox: every event applied
// once and in order, a failed handler's record handed to it again, an
// invalid one committed past, a restarted member resuming from the
// group's commits. Records are keyed by aggregate, as the publisher keys
// them, over several partitions. "one" is Consume, a record at a time;
// "batch" is ConsumeBatch into one inbox transaction per batch.
func TestConsumeIntoInbox(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "one", true: "batch"}[batch], func(t *testing.T) {
			t.Parallel()
			c := startCluster(t)
			cfg := config(c)
			cfg.Partitions = 4
			connect(t, cfg) // creates the topic
			prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.Topic))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(prod.Close)
			b := inboxtest.Broker{
				Invalid: true,
				Publish: func(t *testing.T, bodies [][]byte) {
					recs := make([]*kgo.Record, len(bodies))
					for i, b := range bodies {
						key := []byte("invalid")
						if ev, err := inbox.Decode(b); err == nil {
							key = []byte(ev.Subject)
						}
						recs[i] = &kgo.Record{Key: key, Value: b}
					}
					if err := prod.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
						t.Fatal(err)
					}
				},
			}
			ccfg := kafka.ConsumeConfig{RetryDelay: 10 * time.Millisecond}
			if batch {
				b.StartBatch = func(t *testing.T, name string, handle func(context.Context, [][]byte) []error) func() {
					ccfg.Group, ccfg.Batch = name, 16
					stop, err := kafka.ConsumeBatch(testCtx(t), cfg, ccfg, func(ctx context.Context, ds []broker.Delivery) []error {
						return handle(ctx, bodiesOf(ds))
					})
					if err != nil {
						t.Fatal(err)
					}
					return stop
				}
			} else {
				b.Start = func(t *testing.T, name string, handle func(context.Context, []byte) error) func() {
					ccfg.Group = name
					stop, err := kafka.Consume(testCtx(t), cfg, ccfg,
						func(ctx context.Context, d broker.Delivery) error { return handle(ctx, d.Body) })
					if err != nil {
						t.Fatal(err)
					}
					return stop
				}
			}
			inboxtest.RunConsumer(t, b)
		})
	}
}

func bodiesOf(ds []broker.Delivery) [][]byte {
	bodies := make([][]byte, len(ds))
	for i, d := range ds {
		bodies[i] = d.Body
	}
	return bodies
}
