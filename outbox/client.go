package outbox

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// Client enqueues events and operates the dead-letter queue on one database.
// TTx is the driver's transaction type: pgx.Tx for pgstore, *sql.Tx for
// sqlitestore.
type Client[TTx any] struct {
	driver Driver[TTx]
}

// NewClient returns a Client on driver.
func NewClient[TTx any](driver Driver[TTx]) *Client[TTx] {
	return &Client[TTx]{driver: driver}
}

// Store returns the storage the relay runs on.
func (c *Client[TTx]) Store() Store { return c.driver }

// EnqueueTx writes events inside the caller's transaction, so they commit or
// roll back together with the caller's own changes:
//
//	tx, _ := pool.Begin(ctx)
//	defer tx.Rollback(ctx)
//	// ... update the aggregate ...
//	_, err := client.EnqueueTx(ctx, tx, outbox.Event{AggregateType: "order", ...})
//	// ...
//	tx.Commit(ctx)
//
// Events without an ID get a UUIDv7. Invalid events are refused with
// ErrInvalidEvent before anything is written; ErrDuplicate means an id or
// idempotency key is taken and tx must be rolled back.
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

// Enqueue writes events in a transaction of its own.
func (c *Client[TTx]) Enqueue(ctx context.Context, events ...Event) ([]Enqueued, error) {
	var out []Enqueued
	err := c.driver.WithTx(ctx, func(tx TTx) error {
		var err error
		out, err = c.EnqueueTx(ctx, tx, events...)
		return err
	})
	return out, err
}

// ListDeadLetters lists dead letters matching f, ordered by id.
func (c *Client[TTx]) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	return c.driver.ListDeadLetters(ctx, f)
}

// GetDeadLetter returns one dead letter, or ErrNotFound.
func (c *Client[TTx]) GetDeadLetter(ctx context.Context, id int64) (DeadLetter, error) {
	return c.driver.GetDeadLetter(ctx, id)
}

// ReplayDeadLetter returns a dead letter's event to the outbox exactly once.
// Returns ErrNotFound or ErrAlreadyResolved.
func (c *Client[TTx]) ReplayDeadLetter(ctx context.Context, id int64) error {
	return c.driver.ReplayDeadLetter(ctx, id)
}

// ReplayDeadLetters replays every open dead letter matching f.
func (c *Client[TTx]) ReplayDeadLetters(ctx context.Context, f DeadLetterFilter) (int, error) {
	f.State = DeadLetterOpen
	return c.driver.ReplayDeadLetters(ctx, f)
}

// DiscardDeadLetter resolves a dead letter without publishing it, keeping
// the row and reason as an audit record. Returns ErrNotFound or ErrAlreadyResolved.
func (c *Client[TTx]) DiscardDeadLetter(ctx context.Context, id int64, reason string) error {
	return c.driver.DiscardDeadLetter(ctx, id, reason)
}

// Stats describes the backlog and the dead-letter queue.
func (c *Client[TTx]) Stats(ctx context.Context) (Stats, error) {
	return c.driver.Stats(ctx)
}
