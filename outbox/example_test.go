package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// printer is a Publisher that prints what it is given and acknowledges it.
type printer struct {
	mu   sync.Mutex
	seen int
	done chan struct{}
}

func (p *printer) Publish(_ context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		fmt.Printf("%s %s #%d\n", m.Type, m.AggregateID, m.Sequence)
		if p.seen++; p.seen == 3 {
			close(p.done)
		}
	}
	return make([]error, len(msgs))
}

func (p *printer) Close() error { return nil }

// An application enqueues events in the same transaction as its own change;
// a relay publishes them, one aggregate's events in sequence order.
func Example() {
	dir, _ := os.MkdirTemp("", "herald-example")
	defer func() { _ = os.RemoveAll(dir) }()
	ctx := context.Background()

	store, err := sqlitestore.Open(filepath.Join(dir, "app.db"))
	if err != nil {
		panic(err)
	}
	defer func() { _ = store.Close() }()
	if err := store.Migrate(ctx); err != nil {
		panic(err)
	}
	client := outbox.NewClient[*sql.Tx](store)

	// The application's transaction: its own writes, then its events.
	tx, err := store.DB().BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	_, err = client.EnqueueTx(ctx, tx,
		outbox.Event{AggregateType: "invoice", AggregateID: "inv-7", Type: "invoice.issued", Payload: []byte(`{}`)},
		outbox.Event{AggregateType: "invoice", AggregateID: "inv-7", Type: "invoice.paid", Payload: []byte(`{}`)},
		outbox.Event{AggregateType: "invoice", AggregateID: "inv-7", Type: "invoice.archived", Payload: []byte(`{}`)},
	)
	if err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	pub := &printer{done: make(chan struct{})}
	relayCtx, stop := context.WithCancel(ctx)
	relay := outbox.NewRelay(store, pub, outbox.RelayConfig{})
	finished := make(chan error)
	go func() { finished <- relay.Run(relayCtx) }()
	<-pub.done
	stop()
	if err := <-finished; err != nil {
		panic(err)
	}
	// Output:
	// invoice.issued inv-7 #1
	// invoice.paid inv-7 #2
	// invoice.archived inv-7 #3
}
