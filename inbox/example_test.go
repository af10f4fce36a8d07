package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/sqliteinbox"
)

// A consumer keeps a shipments table. Its events arrive out of order and
// twice; the inbox applies each once, in the order of its aggregate.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "inbox-example")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	d, err := sqliteinbox.Open(filepath.Join(dir, "shipping.db"), sqliteinbox.Config{Name: "shipping"})
	if err != nil {
		panic(err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Migrate(ctx); err != nil {
		panic(err)
	}
	if _, err := d.DB().ExecContext(ctx, `CREATE TABLE shipments (order_id TEXT PRIMARY KEY, status TEXT NOT NULL)`); err != nil {
		panic(err)
	}

	// The handler writes in the inbox's transaction, nowhere else.
	in := inbox.New(d, func(ctx context.Context, tx *sql.Tx, ev inbox.Event) error {
		var status string
		switch ev.Type {
		case "order.payment_confirmed":
			status = "to pack"
		case "line_item.status_changed":
			status = "shipped"
		default:
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO shipments (order_id, status) VALUES (?, ?)
			ON CONFLICT (order_id) DO UPDATE SET status = excluded.status`, ev.Subject, status)
		return err
	}, inbox.Config{})

	event := func(id, typ string, seq int64) inbox.Event {
		return inbox.Event{SpecVersion: "1.0", ID: id, Source: "/herald/orders", Type: typ,
			AggregateType: "order", Subject: "o-1", Sequence: seq, Data: []byte(`{}`)}
	}
	created := event("e1", "order.created", 1)
	paid := event("e2", "order.payment_confirmed", 2)
	shipped := event("e3", "line_item.status_changed", 3)

	// The broker delivers #1, then #3 before #2, then #2, then #3 again.
	for _, ev := range []inbox.Event{created, shipped, paid, shipped} {
		res, err := in.Process(ctx, ev)
		if err != nil {
			panic(err)
		}
		fmt.Printf("#%d %s: %s (released %d)\n", ev.Sequence, ev.Type, res.Outcome, res.Released)
	}
	var status string
	if err := d.DB().QueryRowContext(ctx, `SELECT status FROM shipments WHERE order_id = 'o-1'`).Scan(&status); err != nil {
		panic(err)
	}
	fmt.Println("shipment:", status)
	// Output:
	// #1 order.created: applied (released 0)
	// #3 line_item.status_changed: held (released 0)
	// #2 order.payment_confirmed: applied (released 1)
	// #3 line_item.status_changed: duplicate (released 0)
	// shipment: shipped
}
