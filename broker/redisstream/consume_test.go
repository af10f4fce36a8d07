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
// "one" is Consume, an entry at a time; "batch" is ConsumeBatch into one
// inbox transaction per batch.
func TestConsumeIntoInbox(t *testing.T) {
	t.Parallel()
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "one", true: "batch"}[batch], func(t *testing.T) {
			t.Parallel()
			cfg := uniqueConfig(t, localAddr())
			rdb := admin(t, localAddr())
			b := inboxtest.Broker{
				Invalid: true,
				Publish: func(t *testing.T, bodies [][]byte) {
					for _, b := range bodies {
						if err := rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: cfg.Stream,
							Values: []string{redisstream.FieldEvent, string(b)}}).Err(); err != nil {
							t.Fatal(err)
						}
					}
				},
			}
			ccfg := redisstream.ConsumeConfig{Consumer: "c1", Workers: 4, RetryDelay: 50 * time.Millisecond}
			if batch {
				b.StartBatch = func(t *testing.T, name string, handle func(context.Context, [][]byte) []error) func() {
					ccfg.Group, ccfg.Workers, ccfg.Batch = name, 2, 16
					stop, err := redisstream.ConsumeBatch(testCtx(t), cfg, ccfg, func(ctx context.Context, ds []broker.Delivery) []error {
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
				}
			} else {
				b.Start = func(t *testing.T, name string, handle func(context.Context, []byte) error) func() {
					ccfg.Group = name
					stop, err := redisstream.Consume(testCtx(t), cfg, ccfg,
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
