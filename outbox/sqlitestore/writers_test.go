package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// TestWriterWaitsForHeldTransaction: SQLite has one writer at a time, so a
// second writer of an aggregate (or of any other) waits for the first and
// then numbers after it; a rollback gives the sequence back.
func TestWriterWaitsForHeldTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	client := outbox.NewClient(d)
	for _, commit := range []bool{false, true} {
		tx, err := d.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		held, err := client.EnqueueTx(ctx, tx, ev("order", "a", "x"))
		if err != nil {
			t.Fatal(err)
		}
		second := make(chan []outbox.Enqueued, 1)
		go func() {
			out, err := client.Enqueue(ctx, ev("order", "a", "y"))
			if err != nil {
				t.Error(err)
			}
			second <- out
		}()
		select {
		case out := <-second:
			t.Fatalf("second writer did not wait: %+v", out)
		case <-time.After(200 * time.Millisecond):
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		out := <-second
		if want := held[0].Sequence + map[bool]int64{false: 0, true: 1}[commit]; len(out) != 1 || out[0].Sequence != want {
			t.Fatalf("commit %v: held %d, second writer %+v; want sequence %d", commit, held[0].Sequence, out, want)
		}
	}
	b := claim(t, d, outbox.ClaimParams{})
	defer func() { _ = b.Release(ctx) }()
	if got := keys(b.Records()); got != "a/1" {
		t.Fatalf("claimed %q", got)
	}
}

// TestWriteGate: a writer queued behind a held write transaction gives up
// when its context ends, and the queue moves on when a transaction ends by
// its context.
func TestWriteGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	txCtx, cancelTx := context.WithCancel(ctx)
	tx, err := d.DB().BeginTx(txCtx, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := outbox.NewClient(d).Enqueue(short, ev("order", "a", "x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("writer behind a held transaction: %v, want its context's deadline", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("writer waited %v for a 100ms context", waited)
	}
	cancelTx() // database/sql rolls tx back
	deadline, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if _, err := outbox.NewClient(d).Enqueue(deadline, ev("order", "a", "x")); err != nil {
		t.Fatalf("writer after the held transaction's context ended: %v", err)
	}
	if err := tx.Rollback(); !errors.Is(err, sql.ErrTxDone) {
		t.Fatalf("held transaction: %v, want ErrTxDone", err)
	}
	// Read-only transactions do not queue.
	tx2, err := d.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback() }()
	ro, err := d.DB().BeginTx(deadline, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only transaction behind a writer: %v", err)
	}
	var n int
	if err := ro.QueryRowContext(deadline, sqlf(d, `SELECT count(*) FROM {{outbox}}`)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("read in a read-only transaction: %d, %v", n, err)
	}
	_ = ro.Rollback()
}

// TestWritersWaitForBatch: more writers than pooled connections queue on the
// write lock while a batch holds it; the batch still finishes (it needs no
// second connection) and every writer then commits.
func TestWritersWaitForBatch(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	d := openDriver(t, path)
	// The test reads through another handle: while the batch holds the lock,
	// the writers hold every pooled connection of d.
	reader := openDriver(t, path)
	enqueue(t, d, ev("order", "first", "x"))
	b := claim(t, d, outbox.ClaimParams{})
	writers := 2 * d.DB().Stats().MaxOpenConnections
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
	)
	for i := range writers {
		wg.Go(func() {
			if _, err := outbox.NewClient(d).Enqueue(context.Background(), ev("order", fmt.Sprint("w", i), "x")); err != nil {
				t.Errorf("writer %d: %v", i, err)
				failed.Add(1)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if n := count(t, reader, `SELECT count(*) FROM {{outbox}}`); n != 1 {
		t.Errorf("%d events visible while the batch held the lock, want 1", n)
	}
	finish(t, b, published)
	wg.Wait()
	if n := count(t, d, `SELECT count(*) FROM {{outbox}}`); n != writers || failed.Load() != 0 {
		t.Fatalf("%d events after the batch, %d writers failed; want %d and 0", n, failed.Load(), writers)
	}
}

// TestRelayKeepsOrderAcrossProcesses runs two relays on two handles of one
// file (as two processes would) while writers enqueue, and checks that each
// aggregate's events are published in sequence order, each once.
func TestRelayKeepsOrderAcrossProcesses(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	d1 := openDriver(t, path)
	d2 := openDriver(t, path)
	pub := &recorder{seen: map[string][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	var relays sync.WaitGroup
	for _, d := range []*sqlitestore.Driver{d1, d2} {
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{BatchSize: 7, Workers: 2, PollInterval: 10 * time.Millisecond})
		relays.Go(func() { _ = r.Run(ctx) })
	}
	const aggregates, perAggregate = 10, 30
	var writers sync.WaitGroup
	for w := range 3 {
		d := []*sqlitestore.Driver{d1, d2, d1}[w]
		writers.Go(func() {
			for i := range perAggregate * aggregates / 3 {
				agg := fmt.Sprint("agg", (i+w)%aggregates)
				if _, err := outbox.NewClient(d).Enqueue(context.Background(), ev("order", agg, "x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for pub.total() < aggregates*perAggregate && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	relays.Wait()
	if got := pub.total(); got != aggregates*perAggregate {
		t.Fatalf("published %d events, want %d", got, aggregates*perAggregate)
	}
	for agg, seqs := range pub.seen {
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("%s: published sequences %v, want 1..%d in order", agg, seqs, len(seqs))
			}
		}
	}
}

type recorder struct {
	mu   sync.Mutex
	seen map[string][]int64
	n    int
}

func (r *recorder) Publish(_ context.Context, msgs []outbox.Message) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.seen[m.AggregateID] = append(r.seen[m.AggregateID], m.Sequence)
		r.n++
	}
	return make([]error, len(msgs))
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *recorder) Close() error { return nil }
