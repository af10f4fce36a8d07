package guarantees_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// G1 while the writers' connections are terminated again and again
// (pg_terminate_backend, as an operator or a restart does): a write that
// returned nil is delivered; one that returned ErrUnavailable wrote nothing,
// so writing the same event again keeps its aggregate's sequence without a
// gap or a repeat; only ErrOutcomeUnknown may have gone either way.
func TestG1WritersLoseTheirConnections(t *testing.T) {
	t.Parallel()
	b := newPostgres(t)
	br := newBroker(t, machineNATSURL())
	runRelay(t, b.store, br.publisher(t), outbox.RelayConfig{BatchSize: 20, Retry: outbox.RetryPolicy{Base: 10 * time.Millisecond}})

	app := "writers_" + randomName()
	pool, err := pgxpool.New(context.Background(), b.url+"&pool_max_conns=6&application_name="+url.QueryEscape(app))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	d, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	client := outbox.NewClient[pgx.Tx](d)

	l := newLedger()
	var (
		mu                  sync.Mutex
		maybe               []outbox.Event // of unknown outcome, each its writer's last
		unavailable, killed atomic.Int64
		writtenAll          atomic.Int64 // successful writes, so that kills never starve the writers
		writers             sync.WaitGroup
		stop                = make(chan struct{})
		killer              sync.WaitGroup
	)
	killer.Go(func() {
		var seen int64
		for {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			// Kill again only once a write got through since the last kill:
			// on a slow machine a write may take longer than the interval,
			// and the writers must still finish.
			w := writtenAll.Load()
			if w == seen {
				continue
			}
			seen = w
			var n int64
			if err := b.store.(*pgstore.Driver).Pool().QueryRow(context.Background(),
				"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
				t.Error(err)
				return
			}
			killed.Add(n)
		}
	})
	for w := range 6 {
		writers.Go(func() {
			gen, n := 0, 0
			agg := fmt.Sprintf("lost-%d-%d", w, gen)
			e := newEvent(t, agg, n)
			for written := 0; written < 60; {
				err := client.WithTx(context.Background(), func(tx pgx.Tx) error {
					_, err := client.EnqueueTx(context.Background(), tx, e)
					return err
				})
				switch {
				case err == nil:
					l.add(e)
					written++
					writtenAll.Add(1)
					n++
					e = newEvent(t, agg, n)
				case errors.Is(err, outbox.ErrOutcomeUnknown):
					mu.Lock()
					maybe = append(maybe, e)
					mu.Unlock()
					// The aggregate's next sequence is unknown now: go on
					// with another one.
					gen, n = gen+1, 0
					agg = fmt.Sprintf("lost-%d-%d", w, gen)
					e = newEvent(t, agg, n)
				case errors.Is(err, outbox.ErrUnavailable):
					unavailable.Add(1) // nothing written: the same event again
				default:
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	killer.Wait()

	waitDrained(t, b.store)
	received := br.received(t)
	for _, e := range maybe {
		if slices.ContainsFunc(received, func(ce outbox.CloudEvent) bool { return ce.ID == e.ID.String() }) {
			l.add(e)
		}
	}
	v := l.check(received)
	v.assertClean(t)
	if killed.Load() == 0 {
		t.Fatal("no writer's connection was terminated; the test proved nothing")
	}
	t.Logf("terminated %d connections; %d writes unavailable and written again, %d of unknown outcome, %d delivered",
		killed.Load(), unavailable.Load(), len(maybe), l.total())
}
