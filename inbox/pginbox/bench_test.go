package pginbox_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/inboxtest"
	"github.com/heraldhq/herald/internal/testdb"
)

// benchClients is how many consumer transactions run at once.
const benchClients = 8

// benchBatch is the events per transaction of the batched runs: what a
// broker consumer hands over at once (natsjs.ConsumeBatch's default).
const benchBatch = 64

// BenchmarkConsume measures what the inbox costs a consumer, from 8
// concurrent workers, every worker taking its own aggregates' events in
// sequence (the common case: no duplicates, nothing held). An op is one
// transaction; events/s is the throughput.
//
//   - batch=1: one event per transaction. "plain" is BEGIN; handler;
//     COMMIT; "inbox" is Process.
//   - batch=64: 64 events per transaction, as a consumer that takes a
//     broker's batch at once. "plain" is BEGIN; the handler on each
//     event; COMMIT; "inbox" is ProcessBatch, the same handler on each
//     event with the inbox's two round trips per batch.
//
// Handlers: "empty" does nothing, so the plain transaction writes nothing
// and flushes no WAL at its commit, while the inbox's records the ids and
// must flush; "insert" writes one row per event, as a consumer that keeps
// state does, and both flush once per transaction.
func BenchmarkConsume(b *testing.B) {
	ctx := context.Background()
	url, _ := testdb.PostgresSchema(b)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	pcfg.MaxConns = benchClients + 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	d, err := open(ctx, pool)
	if err != nil {
		b.Fatal(err)
	}
	handlers := map[string]inbox.Handler[pgx.Tx]{
		"empty":  func(context.Context, pgx.Tx, inbox.Event) error { return nil },
		"insert": harness.Record,
	}
	parallelism := max(1, (benchClients+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
	var run atomic.Int64 // keeps aggregates apart across runs
	for _, size := range []int{1, benchBatch} {
		for _, hname := range []string{"empty", "insert"} {
			h := handlers[hname]
			in := inbox.New(d, h, inbox.Config{})
			for _, mode := range []string{"plain", "inbox"} {
				b.Run(fmt.Sprintf("batch=%d/handler=%s/%s", size, hname, mode), func(b *testing.B) {
					r := run.Add(1)
					var workers atomic.Int64
					b.SetParallelism(parallelism)
					b.ReportAllocs()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						w := workers.Add(1)
						evs := make([]inbox.Event, size)
						for i := int64(0); pb.Next(); {
							// 100 aggregates per worker, their events in sequence.
							for k := range evs {
								evs[k] = inboxtest.Event(fmt.Sprintf("r%dw%da%d", r, w, i%100), i/100+1)
								i++
							}
							if err := consume(ctx, pool, in, h, mode, evs); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
				})
			}
		}
	}
}

// consume takes evs in one transaction, with the inbox or without.
func consume(ctx context.Context, pool *pgxpool.Pool, in *inbox.Inbox[pgx.Tx], h inbox.Handler[pgx.Tx], mode string, evs []inbox.Event) error {
	switch {
	case mode == "plain":
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for _, ev := range evs {
				if err := h(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		})
	case len(evs) == 1:
		_, err := in.Process(ctx, evs[0])
		return err
	}
	for _, r := range in.ProcessBatch(ctx, evs) {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}
