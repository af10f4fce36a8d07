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
// them, over several partitions.
func TestConsumeIntoInbox(t *testing.T) {
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
	inboxtest.RunConsumer(t, inboxtest.Broker{
		Invalid: true,
		Publish: func(t *testing.T, bodies [][]byte) {
			for _, b := range bodies {
				key := []byte("invalid")
				if ev, err := inbox.Decode(b); err == nil {
					key = []byte(ev.Subject)
				}
				if err := prod.ProduceSync(testCtx(t), &kgo.Record{Key: key, Value: b}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		},
		Start: func(t *testing.T, name string, handle func(context.Context, []byte) error) func() {
			stop, err := kafka.Consume(testCtx(t), cfg, kafka.ConsumeConfig{Group: name, RetryDelay: 10 * time.Millisecond},
				func(ctx context.Context, d broker.Delivery) error { return handle(ctx, d.Body) })
			if err != nil {
				t.Fatal(err)
			}
			return stop
		},
	})
}

// The same, with each partition's records handed over in batches to one
// inbox transaction each.
func TestConsumeBatchIntoInbox(t *testing.T) {
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
	inboxtest.RunConsumer(t, inboxtest.Broker{
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
		StartBatch: func(t *testing.T, name string, handle func(context.Context, [][]byte) []error) func() {
			stop, err := kafka.ConsumeBatch(testCtx(t), cfg, kafka.ConsumeConfig{Group: name, Batch: 16, RetryDelay: 10 * time.Millisecond},
				func(ctx context.Context, ds []broker.Delivery) []error {
					bodies := make([][]byte, len(ds))
					for i, d := range ds {
						bodies[i] = d.Body
					}
					return handle(ctx, bodies)
				})
			if err != nil {
				t.Fatal(err)
			}
			return stop
		},
	})
}
