package inboxtest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/sqliteinbox"
)

// Broker is a broker consumer under test: the suite RunConsumer publishes
// events with Publish and takes them through an inbox with a consumer that
// Start starts.
type Broker struct {
	// Publish puts the message bodies on the broker, in this order.
	Publish func(t *testing.T, bodies [][]byte)
	// Start starts a consumer called name that calls handle for each
	// message and acknowledges it once handle returns nil; stop stops it,
	// letting the messages being handled finish.
	Start func(t *testing.T, name string, handle func(ctx context.Context, body []byte) error) (stop func())
	// StartBatch, when set, replaces Start: a consumer that hands the
	// messages over in batches (handle returns each one's error at its
	// position) and acknowledges each whose error is nil. The suite hands
	// its batches to inbox.DeliverBatch.
	StartBatch func(t *testing.T, name string, handle func(ctx context.Context, bodies [][]byte) []error) (stop func())
	// Push says that the broker pushes messages to a running consumer
	// (a webhook): the suite starts it before it publishes, and Publish
	// retries what the consumer refused until it is accepted.
	Push bool
	// Invalid says that the consumer drops or terminates a message whose
	// handle error wraps inbox.ErrInvalidEvent; the suite then publishes
	// one and checks that it is refused once, not delivered again.
	Invalid bool
}

// Consumer wait bounds: the whole stream must be through by then.
const consumerWait = 90 * time.Second

// RunConsumer checks a broker consumer feeding an inbox (on SQLite): a
// shuffled stream with duplicates, whose handler fails on the first
// delivery of some events, ends with every event applied once and in
// sequence; a consumer stopped and started again under its name takes the
// events published meanwhile, without any loss.
func RunConsumer(t *testing.T, b Broker) {
	t.Helper()
	const aggregates, per, half = 10, 20, 10
	ctx, cancel := context.WithTimeout(context.Background(), 3*consumerWait)
	defer cancel()
	sink := newSink(t, ctx)

	evs := Stream(aggregates, per, 3)
	first, second := make([][]byte, 0, len(evs)), [][]byte{}
	for i, ev := range evs {
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Sequence <= half {
			first = append(first, body)
			if i%9 == 0 {
				first = append(first, body) // a duplicate
			}
		} else {
			second = append(second, body)
		}
	}
	if b.Invalid {
		first = append(first[:5:5], append([][]byte{[]byte(`{"not":"an event"}`)}, first[5:]...)...)
	}
	// The handler fails on the first delivery of every seventh event.
	sink.failFirst(func(ev inbox.Event) bool { return ev.Sequence%7 == 3 })

	// startAndPublish publishes bodies while the consumer is stopped (a
	// pull consumer then takes what was published meanwhile), or after it
	// started (a push consumer).
	startAndPublish := func(bodies [][]byte) (stop func()) {
		if !b.Push {
			b.Publish(t, bodies)
		}
		if b.StartBatch != nil {
			stop = b.StartBatch(t, "inboxtest", sink.deliverBatch)
		} else {
			stop = b.Start(t, "inboxtest", sink.deliver)
		}
		if b.Push {
			b.Publish(t, bodies)
		}
		return stop
	}
	stop := startAndPublish(first)
	rows := sink.waitApplied(t, aggregates*half)
	stop()
	CheckInSequence(t, rows, aggregates, half)

	stop = startAndPublish(second)
	defer stop()
	rows = sink.waitApplied(t, aggregates*per)
	CheckInSequence(t, rows, aggregates, per)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.failures == 0 {
		t.Error("the handler never failed: the redelivery path went untested")
	}
	if b.StartBatch != nil {
		t.Logf("%d batches, the largest of %d messages", sink.batches, sink.largest)
	}
	if b.Invalid && sink.invalid != 1 {
		t.Errorf("the invalid message was refused %d times, want once", sink.invalid)
	}
}

// sink is an inbox on SQLite recording each applied event in a table.
type sink struct {
	ctx context.Context
	d   *sqliteinbox.Driver
	in  *inbox.Inbox[*sql.Tx]

	mu       sync.Mutex
	failOn   func(inbox.Event) bool
	failed   map[string]bool // ids whose first delivery failed
	failures int
	invalid  int
	batches  int // the batches handed to deliverBatch
	largest  int // the most messages in one of them
}

func newSink(t *testing.T, ctx context.Context) *sink {
	t.Helper()
	d, closeFn, err := sqliteHarness.Open(ctx, t.TempDir()+"/consumer.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	s := &sink{ctx: ctx, d: d.(*sqliteinbox.Driver), failed: map[string]bool{}}
	s.in = inbox.New(d, func(ctx context.Context, tx *sql.Tx, ev inbox.Event) error {
		s.mu.Lock()
		fail := s.failOn != nil && s.failOn(ev) && !s.failed[ev.ID]
		if fail {
			s.failed[ev.ID] = true
			s.failures++
		}
		s.mu.Unlock()
		if fail {
			return errors.New("inboxtest: the handler fails on the first delivery")
		}
		return sqliteHarness.Record(ctx, tx, ev)
	}, inbox.Config{})
	return s
}

func (s *sink) failFirst(f func(inbox.Event) bool) {
	s.mu.Lock()
	s.failOn = f
	s.mu.Unlock()
}

func (s *sink) deliver(ctx context.Context, body []byte) error {
	err := s.in.Deliver(ctx, body)
	if errors.Is(err, inbox.ErrInvalidEvent) {
		s.mu.Lock()
		s.invalid++
		s.mu.Unlock()
	}
	return err
}

func (s *sink) deliverBatch(ctx context.Context, bodies [][]byte) []error {
	errs := s.in.DeliverBatch(ctx, bodies)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	s.largest = max(s.largest, len(bodies))
	for _, err := range errs {
		if errors.Is(err, inbox.ErrInvalidEvent) {
			s.invalid++
		}
	}
	return errs
}

// waitApplied waits until the consumer table has n rows and returns them.
func (s *sink) waitApplied(t *testing.T, n int) []Applied {
	t.Helper()
	deadline := time.Now().Add(consumerWait)
	for {
		rows, err := sqliteHarness.Applied(s.ctx, s.d)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) >= n {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events applied after %v, want %d", len(rows), consumerWait, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sqliteHarness is the SQLite inbox with a consumer table, as the sink uses
// it (and package sqliteinbox's own tests could).
var sqliteHarness = Harness[*sql.Tx]{
	Open: func(ctx context.Context, path string) (inbox.Driver[*sql.Tx], func(), error) {
		d, err := sqliteinbox.Open(path, sqliteinbox.Config{})
		if err != nil {
			return nil, nil, err
		}
		closeFn := func() { _ = d.Close() }
		if err := d.Migrate(ctx); err != nil {
			closeFn()
			return nil, nil, err
		}
		_, err = d.DB().ExecContext(ctx, `CREATE TABLE IF NOT EXISTS applied (
			pos INTEGER PRIMARY KEY AUTOINCREMENT,
			aggregate_id TEXT NOT NULL, sequence INTEGER NOT NULL, event_id TEXT NOT NULL)`)
		if err != nil {
			closeFn()
			return nil, nil, fmt.Errorf("create the consumer table: %w", err)
		}
		return d, closeFn, nil
	},
	Record: func(ctx context.Context, tx *sql.Tx, ev inbox.Event) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO applied (aggregate_id, sequence, event_id) VALUES (?, ?, ?)`,
			ev.Subject, ev.Sequence, ev.ID)
		return err
	},
	Applied: func(ctx context.Context, d inbox.Driver[*sql.Tx]) ([]Applied, error) {
		rows, err := d.(*sqliteinbox.Driver).DB().QueryContext(ctx, `SELECT aggregate_id, sequence, event_id FROM applied ORDER BY pos`)
		if err != nil {
			return nil, err
		}
		defer func() { _ = rows.Close() }()
		var out []Applied
		for rows.Next() {
			var a Applied
			if err := rows.Scan(&a.AggregateID, &a.Sequence, &a.EventID); err != nil {
				return nil, err
			}
			out = append(out, a)
		}
		return out, rows.Err()
	},
}

// SQLiteHarness returns the harness of the SQLite driver with a consumer
// table, for package sqliteinbox's tests.
func SQLiteHarness(fresh func(t testing.TB) string) Harness[*sql.Tx] {
	h := sqliteHarness
	h.Fresh = fresh
	return h
}
