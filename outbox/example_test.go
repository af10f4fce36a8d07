package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// printer is a Publisher that prints what it is given and acknowledges it,
// except events of the types in fail, which it refuses for good. It closes
// done once it has acknowledged want events.
type printer struct {
	mu   sync.Mutex
	fail map[string]bool
	want int
	done chan struct{}
}

func newPrinter(want int, fail ...string) *printer {
	p := &printer{want: want, done: make(chan struct{}), fail: map[string]bool{}}
	for _, t := range fail {
		p.fail[t] = true
	}
	return p
}

func (p *printer) Publish(_ context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		if p.fail[m.Type] {
			errs[i] = outbox.Permanent(errors.New("the broker refused it"))
			continue
		}
		fmt.Printf("published %s %s #%d\n", m.Type, m.AggregateID, m.Sequence)
		if p.want--; p.want == 0 {
			close(p.done)
		}
	}
	return errs
}

func (p *printer) Close() error { return nil }

// openExample opens an outbox on a new SQLite file with an application
// table beside it. The returned function removes it all.
func openExample() (*sqlitestore.Driver, func()) {
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		panic(err)
	}
	driver, err := sqlitestore.Open(filepath.Join(dir, "app.db"), sqlitestore.Config{Name: "invoices"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := driver.Migrate(ctx); err != nil {
		panic(err)
	}
	_, err = driver.DB().ExecContext(ctx, `CREATE TABLE invoice (id TEXT PRIMARY KEY, status TEXT, version INTEGER)`)
	if err != nil {
		panic(err)
	}
	return driver, func() { _ = driver.Close(); _ = os.RemoveAll(dir) }
}

// relayUntil runs a relay from driver to pub until pub is done.
func relayUntil(driver outbox.Source, pub *printer) {
	ctx, stop := context.WithCancel(context.Background())
	relay := outbox.NewRelay(driver, pub, outbox.RelayConfig{})
	finished := make(chan error)
	go func() { finished <- relay.Run(ctx) }()
	<-pub.done
	stop()
	if err := <-finished; err != nil {
		panic(err)
	}
}

// An application writes its own row and its events in one transaction; a
// relay publishes them, one aggregate's events in sequence order. The
// invoice's version column numbers its events: the row is locked by the
// write anyway, so the outbox needs no counter of its own.
func Example() {
	driver, cleanup := openExample()
	defer cleanup()
	ctx := context.Background()
	client := outbox.NewClient(driver)

	issue := func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO invoice VALUES ('inv-7', 'issued', 1)`); err != nil {
			return err
		}
		_, err := client.EnqueueTx(ctx, tx, outbox.Event{
			AggregateType: "invoice", AggregateID: "inv-7", Type: "invoice.issued",
			Payload: []byte(`{"amount": 1200}`), Sequence: 1,
		})
		return err
	}
	pay := func(tx *sql.Tx) error {
		var version int64
		err := tx.QueryRowContext(ctx, `UPDATE invoice SET status = 'paid', version = version + 1
			WHERE id = 'inv-7' RETURNING version`).Scan(&version)
		if err != nil {
			return err
		}
		_, err = client.EnqueueTx(ctx, tx, outbox.Event{
			AggregateType: "invoice", AggregateID: "inv-7", Type: "invoice.paid",
			Payload: []byte(`{}`), Sequence: version,
		})
		return err
	}
	for _, change := range []func(*sql.Tx) error{issue, pay} {
		if err := client.WithTx(ctx, change); err != nil {
			panic(err)
		}
	}

	relayUntil(driver, newPrinter(2))
	// Output:
	// published invoice.issued inv-7 #1
	// published invoice.paid inv-7 #2
}

// A caller that begins and commits its own transaction passes it to
// EnqueueTx, and calls Notify after the commit so that the relays need not
// wait for their next poll. Events without a Sequence are numbered by the
// outbox.
func ExampleClient_EnqueueTx() {
	driver, cleanup := openExample()
	defer cleanup()
	ctx := context.Background()
	client := outbox.NewClient(driver)

	tx, err := driver.DB().BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	enqueued, err := client.EnqueueTx(ctx, tx,
		outbox.Event{AggregateType: "invoice", AggregateID: "inv-8", Type: "invoice.issued", Payload: []byte(`{}`)},
		outbox.Event{AggregateType: "invoice", AggregateID: "inv-8", Type: "invoice.sent", Payload: []byte(`{}`)},
	)
	if err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}
	client.Notify()
	for _, e := range enqueued {
		fmt.Println("sequence", e.Sequence)
	}
	// Output:
	// sequence 1
	// sequence 2
}

// An event the broker refuses for good is dead-lettered, and the events of
// its aggregate after it wait. An operator replays it once the cause is
// fixed; it is published again with its id and sequence, and the parked
// events follow in order.
func ExampleAdmin_ReplayDeadLetter() {
	driver, cleanup := openExample()
	defer cleanup()
	ctx := context.Background()
	client := outbox.NewClient(driver)
	_, err := client.Enqueue(ctx,
		outbox.Event{AggregateType: "invoice", AggregateID: "inv-9", Type: "invoice.issued", Payload: []byte(`{}`)},
		outbox.Event{AggregateType: "invoice", AggregateID: "inv-9", Type: "invoice.paid", Payload: []byte(`{}`)},
	)
	if err != nil {
		panic(err)
	}

	// The first relay's broker refuses invoice.issued.
	ctx1, stop := context.WithCancel(ctx)
	relay := outbox.NewRelay(driver, newPrinter(1, "invoice.issued"), outbox.RelayConfig{})
	finished := make(chan error)
	go func() { finished <- relay.Run(ctx1) }()
	var admin outbox.Admin = driver
	for {
		st, err := admin.Stats(ctx)
		if err != nil {
			panic(err)
		}
		if st.DeadLetters == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-finished; err != nil {
		panic(err)
	}
	open, err := admin.ListDeadLetters(ctx, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})
	if err != nil {
		panic(err)
	}
	dl := open[0]
	fmt.Printf("dead letter: %s #%d: %s\n", dl.EventType, dl.Sequence, dl.Error)

	// Fixed: replay it, and relay again.
	if err := admin.ReplayDeadLetter(ctx, dl.ID); err != nil {
		panic(err)
	}
	relayUntil(driver, newPrinter(2))
	// Output:
	// dead letter: invoice.issued #1: permanent: the broker refused it
	// published invoice.issued inv-9 #1
	// published invoice.paid inv-9 #2
}

// A consumer continues the trace of the request that wrote an event: the
// context TraceContext returns holds the writer's span context, the parent
// of the consumer's own span (tracer.Start(ctx, "process "+ce.Type)).
func ExampleTraceContext() {
	body := []byte(`{"specversion":"1.0","id":"0190a000-0000-7000-8000-000000000001","source":"herald","type":"order.created",` +
		`"subject":"o-1","time":"2031-05-06T07:08:09Z","datacontenttype":"application/json","data":{},"aggregatetype":"order",` +
		`"sequence":1,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`)
	ce, err := outbox.ParseCloudEvent(body)
	if err != nil {
		panic(err)
	}
	ctx := outbox.TraceContext(context.Background(), ce)
	sc := trace.SpanContextFromContext(ctx)
	fmt.Println(sc.TraceID(), sc.SpanID(), sc.IsRemote())
	// Output: 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 true
}
