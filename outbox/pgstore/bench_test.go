package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// benchClients is how many transactions run at once.
const benchClients = 8

// BenchmarkEnqueue measures the cost of the outbox on a writer's
// transaction: one transaction per op, holding one event, from 8 concurrent
// clients. "outbox" enqueues with Client.EnqueueTx (sequence counter and
// insert in one statement) and calls Notify after the commit, as by default;
// "outbox_notify_in_tx" sends pg_notify in the transaction instead
// (Config.NotifyInTx); "outbox_no_notify" sends no wake-up
// (Config.DisableNotify); "hand_insert" inserts the same row with a plain
// INSERT and a sequence the client counts itself — the floor for any outbox.
func BenchmarkEnqueue(b *testing.B) {
	payload := json.RawMessage(`{"order_id":"4f1c2a9e-8d7b-4c1e-9a53-0d6e2f1b7c44","status":"payment_confirmed",` +
		`"amount":3998,"currency":"EUR","line_items":[{"id":"li-1","quantity":2,"unit_price":1999}]}`)
	headers := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	parallelism := max(1, (benchClients+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))

	// run runs op in a transaction per iteration, then afterCommit unless nil.
	run := func(b *testing.B, d *pgstore.Driver, afterCommit func(), op func(ctx context.Context, tx pgx.Tx, client, i int) error) {
		ctx := context.Background()
		if _, err := d.Pool().Exec(ctx, sqlOf(d, "TRUNCATE {{outbox}}, {{sequences}}")); err != nil {
			b.Fatal(err)
		}
		var clients atomic.Int64
		b.SetParallelism(parallelism)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			client := int(clients.Add(1))
			for i := 1; pb.Next(); i++ {
				err := pgx.BeginFunc(ctx, d.Pool(), func(tx pgx.Tx) error { return op(ctx, tx, client, i) })
				if err != nil {
					b.Error(err)
					return
				}
				if afterCommit != nil {
					afterCommit()
				}
			}
		})
	}

	for _, v := range []struct {
		name string
		cfg  pgstore.Config
	}{
		{"outbox", pgstore.Config{}},
		{"outbox_notify_in_tx", pgstore.Config{NotifyInTx: true}},
		{"outbox_no_notify", pgstore.Config{DisableNotify: true}},
	} {
		b.Run(v.name, func(b *testing.B) {
			d := newDriver(b, v.cfg)
			c := outbox.NewClient[pgx.Tx](d)
			var afterCommit func()
			if !v.cfg.NotifyInTx && !v.cfg.DisableNotify {
				afterCommit = d.Notify
			}
			run(b, d, afterCommit, func(ctx context.Context, tx pgx.Tx, client, _ int) error {
				_, err := c.EnqueueTx(ctx, tx, outbox.Event{
					AggregateType: "order",
					AggregateID:   fmt.Sprintf("order-%d", client),
					Type:          "order.status_changed",
					Payload:       payload,
					Headers:       headers,
				})
				return err
			})
		})
	}

	b.Run("hand_insert", func(b *testing.B) {
		d := newDriver(b, pgstore.Config{})
		headerJSON, err := json.Marshal(headers)
		if err != nil {
			b.Fatal(err)
		}
		run(b, d, nil, func(ctx context.Context, tx pgx.Tx, client, i int) error {
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, sqlOf(d, `INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers, sequence)
				VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)`),
				id, "order", fmt.Sprintf("order-%d", client), "order.status_changed", string(payload), string(headerJSON), i)
			return err
		})
	})
}
