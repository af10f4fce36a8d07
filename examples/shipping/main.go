// Command shipping is a small consumer of Herald's order events, in a module
// of its own: it keeps a shipments table from the order.payment_confirmed
// and the physical line items' line_item.status_changed events it reads from
// the orders stream on NATS JetStream, through an inbox on SQLite. The inbox
// drops the events the broker delivers twice and applies each order's events
// in the order Herald committed them, in the same transaction as the
// shipments table's rows.
//
//	herald serve &                      # embedded NATS on 127.0.0.1:4223
//	go run . -nats nats://127.0.0.1:4223 -db shipping.db
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/sqliteinbox"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.NATSURL, "nats", "nats://127.0.0.1:4223", "NATS server of herald's orders stream")
	flag.StringVar(&cfg.DBPath, "db", "shipping.db", "SQLite database file of the shipments")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		slog.Error("shipping", "err", err)
		os.Exit(1)
	}
}

type config struct {
	NATSURL string
	DBPath  string
}

// The orders stream as herald serve publishes it.
var stream = natsjs.Config{Stream: "ORDERS", SubjectPrefix: "orders."}

const schema = `
CREATE TABLE IF NOT EXISTS paid_orders (
	order_id    TEXT PRIMARY KEY,
	customer_id TEXT NOT NULL,
	payment_id  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shipments (
	line_item_id TEXT PRIMARY KEY,
	order_id     TEXT NOT NULL REFERENCES paid_orders (order_id),
	product_id   TEXT NOT NULL,
	quantity     INTEGER NOT NULL,
	status       TEXT NOT NULL
);`

// run consumes until ctx ends.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	d, err := sqliteinbox.Open(cfg.DBPath, sqliteinbox.Config{Name: "shipping"})
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	if err := d.Migrate(ctx); err != nil {
		return err
	}
	if _, err := d.DB().ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create the shipments table: %w", err)
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()

	in := inbox.New(d, apply, inbox.Config{Logger: log})
	// Every event of the orders, not only those the handler acts on: an
	// order's sequence counts all of them, and a missing one would hold
	// the order's later events back. The messages come in batches, each
	// taken through the inbox in one transaction (one commit for all), and
	// each message is acknowledged by its own result once it committed.
	c, err := natsjs.ConsumeBatch(ctx, nc, stream, natsjs.ConsumeConfig{Durable: "shipping", Workers: 2, Batch: 64},
		func(ctx context.Context, ds []natsjs.Delivery) []error {
			bodies := make([][]byte, len(ds))
			for i, d := range ds {
				bodies[i] = d.Body
			}
			return in.DeliverBatch(ctx, bodies)
		})
	if err != nil {
		return err
	}
	log.Info("shipping: consuming", "nats", cfg.NATSURL, "db", cfg.DBPath)
	<-ctx.Done()
	c.Stop()
	return nil
}

// apply is the handler: it writes in the inbox's transaction, nowhere else.
func apply(ctx context.Context, tx *sql.Tx, ev inbox.Event) error {
	switch ev.Type {
	case "order.payment_confirmed":
		var p struct {
			OrderID    string `json:"order_id"`
			CustomerID string `json:"customer_id"`
			PaymentID  string `json:"payment_id"`
		}
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO paid_orders (order_id, customer_id, payment_id) VALUES (?, ?, ?)`,
			p.OrderID, p.CustomerID, p.PaymentID)
		return err
	case "line_item.status_changed":
		var li struct {
			OrderID     string `json:"order_id"`
			LineItemID  string `json:"line_item_id"`
			ProductID   string `json:"product_id"`
			ProductType string `json:"product_type"`
			Quantity    int64  `json:"quantity"`
			To          string `json:"to"`
		}
		if err := json.Unmarshal(ev.Data, &li); err != nil {
			return err
		}
		if li.ProductType != "physical" {
			return nil
		}
		if li.To == "payment_confirmed" { // the order's payment came first: its row is there
			_, err := tx.ExecContext(ctx, `INSERT INTO shipments (line_item_id, order_id, product_id, quantity, status)
				VALUES (?, ?, ?, ?, ?)`, li.LineItemID, li.OrderID, li.ProductID, li.Quantity, li.To)
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE shipments SET status = ? WHERE line_item_id = ?`, li.To, li.LineItemID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		if li.To == "cancelled" { // cancelled before payment: nothing to ship
			return nil
		}
		return errors.New("shipping: a status change of a line item with no shipment")
	}
	return nil
}
