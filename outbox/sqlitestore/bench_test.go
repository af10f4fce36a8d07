package sqlitestore_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func benchEvent(agg int) outbox.Event {
	return outbox.Event{
		AggregateType: "order",
		AggregateID:   fmt.Sprintf("order-%06d", agg),
		Type:          "order.status_changed",
		Payload:       []byte(`{"order_id":"0190b6a2-7c1e-7d2a-9f0e-3b1f2c4d5e6f","from":"pending","to":"payment_confirmed","actor":"api"}`),
		Headers:       map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	}
}

// BenchmarkEnqueue measures Client.EnqueueTx in a transaction of its own
// (begin, enqueue, commit), one writer and several.
func BenchmarkEnqueue(b *testing.B) {
	for _, perTx := range []int{1, 10} {
		b.Run(fmt.Sprintf("events=%d", perTx), func(b *testing.B) {
			d := newDriver(b)
			client := outbox.NewClient(d)
			ctx := context.Background()
			n := 0
			for b.Loop() {
				enqueueTx(b, d, client, ctx, n, perTx)
				n++
			}
			b.ReportMetric(float64(n*perTx)/b.Elapsed().Seconds(), "events/s")
		})
	}
	b.Run("events=1/parallel", func(b *testing.B) {
		d := newDriver(b)
		client := outbox.NewClient(d)
		ctx := context.Background()
		var n atomic.Int64
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				enqueueTx(b, d, client, ctx, int(n.Add(1)), 1)
			}
		})
		b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "events/s")
	})
}

func enqueueTx(b *testing.B, d *sqlitestore.Driver, client *outbox.Client[*sql.Tx], ctx context.Context, n, perTx int) {
	tx, err := d.DB().BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	events := make([]outbox.Event, perTx)
	for j := range events {
		events[j] = benchEvent((n*perTx + j) % 10000)
	}
	if _, err := client.EnqueueTx(ctx, tx, events...); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkClaimFinish drains a backlog of 100k events (10k aggregates, 10
// events each, interleaved as they would be written) in batches of 500,
// every event published.
func BenchmarkClaimFinish(b *testing.B) {
	const backlog, batchSize = 100_000, 500
	ctx := context.Background()
	d := newDriver(b)
	client := outbox.NewClient(d)
	drained := 0
	for b.Loop() {
		b.StopTimer()
		for off := 0; off < backlog; off += 1000 {
			err := d.WithTx(ctx, func(tx *sql.Tx) error {
				events := make([]outbox.Event, 1000)
				for j := range events {
					events[j] = benchEvent((off + j) % 10_000)
				}
				_, err := client.EnqueueTx(ctx, tx, events...)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		outcomes := make([]outbox.Outcome, batchSize)
		for i := range outcomes {
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomePublished}
		}
		for left := backlog; left > 0; {
			batch, err := d.Claim(ctx, outbox.ClaimParams{Limit: batchSize})
			if err != nil {
				b.Fatal(err)
			}
			n := len(batch.Records())
			if n == 0 {
				b.Fatalf("empty claim with %d events left", left)
			}
			if err := batch.Finish(ctx, outcomes[:n]); err != nil {
				b.Fatal(err)
			}
			left -= n
			drained += n
		}
	}
	b.ReportMetric(float64(drained)/b.Elapsed().Seconds(), "events/s")
}
