package redisstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/inbox/inboxtest"
)

// A consumer group on the machine's Redis feeds an inbox: every event
// applied once and in order, a failed handler's entry claimed again, an
// invalid one acknowledged and dropped, a restarted consumer resuming.
func TestConsumeIntoInbox(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	rdb := admin(t, localAddr())
	inboxtest.RunConsumer(t, inboxtest.Broker{
		Invalid: true,
		Publish: func(t *testing.T, bodies [][]byte) {
			for _, b := range bodies {
				if err := rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: cfg.Stream,
					Values: []string{redisstream.FieldEvent, string(b)}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
		},
		Start: func(t *testing.T, name string, handle func(context.Context, []byte) error) func() {
			stop, err := redisstream.Consume(testCtx(t), cfg, redisstream.ConsumeConfig{
				Group: name, Consumer: "c1", Workers: 4, RetryDelay: 50 * time.Millisecond,
			}, func(ctx context.Context, d broker.Delivery) error { return handle(ctx, d.Body) })
			if err != nil {
				t.Fatal(err)
			}
			return stop
		},
	})
}

// The same, with the entries handed over in batches to one inbox
// transaction each.
func TestConsumeBatchIntoInbox(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	rdb := admin(t, localAddr())
	inboxtest.RunConsumer(t, inboxtest.Broker{
		Invalid: true,
		Publish: func(t *testing.T, bodies [][]byte) {
			for _, b := range bodies {
				if err := rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: cfg.Stream,
					Values: []string{redisstream.FieldEvent, string(b)}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
		},
		StartBatch: func(t *testing.T, name string, handle func(context.Context, [][]byte) []error) func() {
			stop, err := redisstream.ConsumeBatch(testCtx(t), cfg, redisstream.ConsumeConfig{
				Group: name, Consumer: "c1", Workers: 2, Batch: 16, RetryDelay: 50 * time.Millisecond,
			}, func(ctx context.Context, ds []broker.Delivery) []error {
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
