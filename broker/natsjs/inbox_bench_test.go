package natsjs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/inboxtest"
	"github.com/heraldhq/herald/inbox/pginbox"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
)

// BenchmarkConsumeIntoInbox measures a whole consumer: b.N events
// published to a JetStream stream beforehand (1,000 aggregates, each one's
// events in sequence), taken by ConsumeBatch (4 workers, batches of up to
// 64, every message acknowledged after its batch committed) into
// PostgreSQL, until all are acknowledged. "plain" runs the handler on each
// event of a batch in one transaction (BEGIN … COMMIT) without an inbox;
// "inbox" hands the same batch to inbox.ProcessBatch. Both take the events
// ConsumeBatch parsed. Handlers: "empty" does nothing, "insert" writes one
// row per event. events/s is the throughput.
func BenchmarkConsumeIntoInbox(b *testing.B) {
	ctx := context.Background()
	url := localURL()
	dburl, _ := testdb.PostgresSchema(b)
	pool, err := pgxpool.New(ctx, dburl)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	d, err := pginbox.New(pool, pginbox.Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE applied (pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		aggregate_id text NOT NULL, sequence bigint NOT NULL, event_id text NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	handlers := map[string]inbox.Handler[pgx.Tx]{
		"empty": func(context.Context, pgx.Tx, inbox.Event) error { return nil },
		"insert": func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
			_, err := tx.Exec(ctx, `INSERT INTO applied (aggregate_id, sequence, event_id) VALUES ($1, $2, $3)`,
				ev.Subject, ev.Sequence, ev.ID)
			return err
		},
	}
	var run atomic.Int64 // keeps aggregates apart across runs
	for _, hname := range []string{"empty", "insert"} {
		h := handlers[hname]
		in := inbox.New(d, h, inbox.Config{})
		for _, mode := range []string{"plain", "inbox"} {
			b.Run(fmt.Sprintf("handler=%s/%s", hname, mode), func(b *testing.B) {
				cfg := uniqueConfig(b, url)
				connect(b, url, cfg) // creates the stream
				nc := dial(b, url)
				js, err := jetstream.New(nc)
				if err != nil {
					b.Fatal(err)
				}
				r := run.Add(1)
				for i := range b.N {
					body, err := json.Marshal(inboxtest.Event(fmt.Sprintf("r%da%d", r, i%1000), int64(i/1000+1)))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := js.PublishAsync(cfg.Subject("thing.changed"), body); err != nil {
						b.Fatal(err)
					}
					if i%1000 == 999 || i == b.N-1 { // no more in flight than the client allows
						select {
						case <-js.PublishAsyncComplete():
						case <-time.After(time.Minute):
							b.Fatal("publishing timed out")
						}
					}
				}
				var (
					handled atomic.Int64
					done    = make(chan struct{})
				)
				count := func(n int) {
					if handled.Add(int64(n)) == int64(b.N) {
						close(done)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				c, err := natsjs.ConsumeBatch(ctx, nc, cfg, natsjs.ConsumeConfig{Durable: "bench", Workers: 4, Batch: 64},
					func(ctx context.Context, ds []natsjs.Delivery) []error {
						errs := consumeDeliveries(ctx, pool, in, h, mode, ds)
						ok := 0
						for _, err := range errs {
							if err == nil {
								ok++
							} else {
								b.Error(err)
							}
						}
						count(ok)
						return errs
					})
				if err != nil {
					b.Fatal(err)
				}
				select {
				case <-done:
				case <-time.After(5 * time.Minute):
					b.Errorf("%d of %d events handled after 5 minutes", handled.Load(), b.N)
				}
				b.StopTimer()
				c.Stop()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// consumeDeliveries takes a batch of deliveries in one transaction, with
// the inbox or without, and returns each one's error.
func consumeDeliveries(ctx context.Context, pool *pgxpool.Pool, in *inbox.Inbox[pgx.Tx], h inbox.Handler[pgx.Tx], mode string, ds []natsjs.Delivery) []error {
	errs := make([]error, len(ds))
	if mode == "plain" {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for _, d := range ds {
				if err := h(ctx, tx, d.Event); err != nil {
					return err
				}
			}
			return nil
		})
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	evs := make([]inbox.Event, 0, len(ds))
	at := make([]int, 0, len(ds))
	for i, d := range ds {
		if d.Err != nil {
			errs[i] = outbox.Permanent(d.Err)
			continue
		}
		evs = append(evs, d.Event)
		at = append(at, i)
	}
	for n, r := range in.ProcessBatch(ctx, evs) {
		errs[at[n]] = r.Err
	}
	return errs
}
