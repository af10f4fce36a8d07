package outbox

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// Client enqueues events in the application's transactions. TTx is the
// driver's transaction type: pgx.Tx for pgstore, *sql.Tx for sqlitestore.
// The dead-letter queue and the figures are the driver's Admin side.
type Client[TTx any] struct {
	driver Driver[TTx]
}

// NewClient returns a Client on driver.
func NewClient[TTx any](driver Driver[TTx]) *Client[TTx] {
	return &Client[TTx]{driver: driver}
}

// WithTx runs fn in a new transaction of the driver, commits it when fn
// returns nil and wakes the relays (see Driver.WithTx). It is the cheapest way to write an
// application change and its events together:
//
//	err := client.WithTx(ctx, func(tx pgx.Tx) error {
//		var version int64
//		err := tx.QueryRow(ctx, `UPDATE accounts SET balance = balance + $2, version = version + 1
//			WHERE id = $1 RETURNING version`, id, amount).Scan(&version)
//		if err != nil {
//			return err
//		}
//		_, err = client.EnqueueTx(ctx, tx, outbox.Event{AggregateType: "account", AggregateID: id,
//			Type: "account.credited", Payload: payload, Sequence: version})
//		return err
//	})
//
// When fn fails or panics the transaction is rolled back (also after ctx is
// cancelled) and fn's error is returned unchanged.
func (c *Client[TTx]) WithTx(ctx context.Context, fn func(tx TTx) error) error {
	return c.driver.WithTx(ctx, fn)
}

// Notify wakes the relays after a commit of the caller's own that enqueued
// events. WithTx and Enqueue do it themselves; without it, the relays find
// the events at their next poll (RelayConfig.PollInterval).
func (c *Client[TTx]) Notify() { c.driver.Notify() }

// EnqueueTx writes events inside the caller's transaction, so they commit or
// roll back together with the caller's own changes (see WithTx for the whole
// pattern). A caller that commits tx itself calls Notify afterwards, so that
// the relays need not wait for their next poll.
//
// Each event's sequence is its position in its aggregate: 1, 2, 3… in commit
// order. When the caller holds a row lock on the aggregate anyway (an UPDATE
// of its row, as above), it numbers the events itself with Event.Sequence,
// from a version column, and the enqueue costs no more than inserting the
// row by hand. Left zero, the outbox numbers them from a counter row per
// aggregate, which works without any lock of the caller's but writes that
// row too (docs/BENCHMARKS.md measures the difference).
//
// Events without an ID get a UUIDv7. Invalid events are refused with
// ErrInvalidEvent before anything is written; ErrDuplicate means an id,
// idempotency key or caller's sequence is taken and tx must be rolled back.
func (c *Client[TTx]) EnqueueTx(ctx context.Context, tx TTx, events ...Event) ([]Enqueued, error) {
	if len(events) == 0 {
		return nil, nil
	}
	prepared := make([]Event, len(events))
	numbered := map[[2]string]int64{} // aggregate → the caller's last sequence in this call, or -1
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		agg := [2]string{e.AggregateType, e.AggregateID}
		last, seen := numbered[agg]
		switch {
		case seen && (last < 0) != (e.Sequence == 0):
			return nil, fmt.Errorf("event %d: %w: events of one aggregate are numbered either all by the caller or all by the outbox", i, ErrInvalidEvent)
		case seen && e.Sequence != 0 && e.Sequence != last+1:
			return nil, fmt.Errorf("event %d: %w: sequence %d follows %d", i, ErrInvalidEvent, e.Sequence, last)
		case e.Sequence == 0:
			numbered[agg] = -1
		default:
			numbered[agg] = e.Sequence
		}
		if e.ID == uuid.Nil {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, fmt.Errorf("outbox: new event id: %w", err)
			}
			e.ID = id
		}
		prepared[i] = e
	}
	return c.driver.InsertTx(ctx, tx, prepared)
}

// Enqueue writes events in a transaction of its own and wakes the relays.
func (c *Client[TTx]) Enqueue(ctx context.Context, events ...Event) ([]Enqueued, error) {
	var out []Enqueued
	err := c.driver.WithTx(ctx, func(tx TTx) error {
		var err error
		out, err = c.EnqueueTx(ctx, tx, events...)
		return err
	})
	return out, err
}
