package redisstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// BenchmarkPublish publishes batches of 500 events of distinct aggregates
// to the machine's Redis, as the relay does with its default batch size,
// through the Publisher and through the tightest plain go-redis loop that
// gives the same guarantee (one pipeline per batch, every reply checked),
// and reports acknowledged messages per second. The ratio of the two
// (publisher ns/op over plain ns/op) is the adapter's overhead.
//
//	go test -run '^$' -bench Publish -benchtime 2000x -count 5 ./broker/redisstream/
func BenchmarkPublish(b *testing.B) {
	const batch = 500
	msgs := publishertest.Batch(b, "bench", batch, 1)

	b.Run("publisher", func(b *testing.B) {
		cfg := uniqueConfig(b, localAddr())
		p := connect(b, cfg)
		ctx := testCtx(b)
		run(b, cfg, batch, func() {
			for i, err := range p.Publish(ctx, msgs) {
				if err != nil {
					b.Fatalf("message %d: %v", i, err)
				}
			}
		})
	})

	b.Run("plain", func(b *testing.B) {
		cfg := uniqueConfig(b, localAddr())
		rdb := redis.NewClient(&redis.Options{Addr: cfg.Addr})
		b.Cleanup(func() { _ = rdb.Close() })
		ctx := testCtx(b)
		run(b, cfg, batch, func() { plainPublish(b, ctx, rdb, cfg.Stream, msgs) })
	})
}

// BenchmarkPublishPaired publishes one batch through the Publisher and one
// through the plain loop in every iteration, timing each, so that both see
// the same load on a shared machine; it reports both rates and their ratio
// (Publisher over plain, in messages per second).
//
//	go test -run '^$' -bench PublishPaired -benchtime 2000x -count 5 ./broker/redisstream/
func BenchmarkPublishPaired(b *testing.B) {
	const batch = 500
	msgs := publishertest.Batch(b, "bench", batch, 1)
	cfg := uniqueConfig(b, localAddr())
	p := connect(b, cfg)
	plainCfg := uniqueConfig(b, localAddr())
	rdb := redis.NewClient(&redis.Options{Addr: plainCfg.Addr})
	b.Cleanup(func() { _ = rdb.Close() })
	keys := admin(b, cfg.Addr)
	ctx := testCtx(b)
	viaPublisher := func() {
		for i, err := range p.Publish(ctx, msgs) {
			if err != nil {
				b.Fatalf("message %d: %v", i, err)
			}
		}
	}
	viaPlain := func() { plainPublish(b, ctx, rdb, plainCfg.Stream, msgs) }
	timed := func(f func()) time.Duration {
		begin := time.Now()
		f()
		return time.Since(begin)
	}
	var pubTime, plainTime time.Duration
	n := 0
	for b.Loop() {
		// Alternate which goes first, lest one always follow the other.
		if n/batch%2 == 0 {
			pubTime += timed(viaPublisher)
			plainTime += timed(viaPlain)
		} else {
			plainTime += timed(viaPlain)
			pubTime += timed(viaPublisher)
		}
		n += batch
		if n%(100*batch) == 0 {
			b.StopTimer()
			if err := keys.Unlink(ctx, cfg.Stream, plainCfg.Stream).Err(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(n)/pubTime.Seconds(), "publisher-msgs/s")
	b.ReportMetric(float64(n)/plainTime.Seconds(), "plain-msgs/s")
	b.ReportMetric(plainTime.Seconds()/pubTime.Seconds(), "ratio")
}

// plainPublish is the loop a go-redis user writes by hand.
func plainPublish(b *testing.B, ctx context.Context, rdb *redis.Client, stream string, msgs []outbox.Message) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: stream,
			Values: []any{"event", m.Body, "type", m.Type, "subject", m.AggregateID, "id", m.ID.String()},
		})
	}
	_, _ = pipe.Exec(ctx)
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			b.Fatalf("message %d: %v", i, err)
		}
	}
}

// run times publish, emptying the stream every 100 batches outside the
// timer, so that the machine's Redis does not fill up.
func run(b *testing.B, cfg redisstream.Config, batch int, publish func()) {
	rdb := admin(b, cfg.Addr)
	ctx := testCtx(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		publish()
		n += batch
		if n%(100*batch) == 0 {
			b.StopTimer()
			if err := rdb.Unlink(ctx, cfg.Stream).Err(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
