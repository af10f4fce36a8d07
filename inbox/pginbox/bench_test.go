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

// BenchmarkConsume measures what the inbox costs a consumer: one event per
// op, each in a transaction of its own, from 8 concurrent workers, every
// worker taking its own aggregates' events in sequence (the common case: no
// duplicates, nothing held). events/s is the throughput.
//
//   - handler=empty: the handler does nothing. "plain" is BEGIN; COMMIT
//     around it, a transaction that writes nothing and so flushes no WAL;
//     "inbox" is Process, whose transaction records the id and the
//     aggregate's sequence, and so flushes WAL at its commit.
//   - handler=insert: the handler inserts one row, as a consumer that
//     keeps state does; both transactions then flush WAL.
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
	for _, hname := range []string{"empty", "insert"} {
		h := handlers[hname]
		in := inbox.New(d, h, inbox.Config{})
		for _, mode := range []string{"plain", "inbox"} {
			b.Run(fmt.Sprintf("handler=%s/%s", hname, mode), func(b *testing.B) {
				r := run.Add(1)
				var workers atomic.Int64
				b.SetParallelism(parallelism)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					w := workers.Add(1)
					for i := int64(0); pb.Next(); i++ {
						// 100 aggregates per worker, their events in sequence.
						ev := inboxtest.Event(fmt.Sprintf("r%dw%da%d", r, w, i%100), i/100+1)
						var err error
						if mode == "inbox" {
							_, err = in.Process(ctx, ev)
						} else {
							err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return h(ctx, tx, ev) })
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
