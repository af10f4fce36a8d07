// Package pgorders is the PostgreSQL store of the orders service: an
// ordersvc.Store on a pgxpool.Pool whose transactions enqueue events through
// the outbox's PostgreSQL driver (pgstore) on the same transaction.
//
//	driver, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
//	store := pgorders.New(pool, outbox.NewClient(driver))
//	if err := driver.Migrate(ctx); err != nil { ... }
//	if err := store.Migrate(ctx); err != nil { ... }
//	svc := ordersvc.New(store, ordersvc.Config{})
//
// LockOrder takes the order row with SELECT … FOR UPDATE, so requests on one
// order take turns and the order's events are numbered in commit order; the
// row keeps the number of its last event (orders.last_event_sequence).
package pgorders

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// Store is the PostgreSQL orders store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	outbox *outbox.Client[pgx.Tx]
}

var (
	_ ordersvc.Store    = (*Store)(nil)
	_ ordersvc.Migrator = (*Store)(nil)
)

// New returns a store on pool that enqueues events with client, whose driver
// must run on the same database. Call Migrate (and the outbox driver's
// Migrate) before first use.
func New(pool *pgxpool.Pool, client *outbox.Client[pgx.Tx]) *Store {
	return &Store{pool: pool, outbox: client}
}

// WithTx runs fn in a transaction of the outbox client's driver (see
// outbox.Client.WithTx): it commits when fn returns nil and then wakes the
// relays; otherwise, or if fn panics, it rolls back, also when ctx is
// already cancelled. fn's error is returned unchanged, except that a lost
// connection is marked with outbox.ErrUnavailable, or with
// outbox.ErrOutcomeUnknown when it was lost during the commit
// (pgstore.Driver.WithTx).
//
// When the connection was lost before the commit (the server restarted,
// the session was terminated), PostgreSQL rolled the transaction back and
// nothing was written: WithTx then runs the whole transaction once more,
// fn included, unless ctx has ended. fn must therefore leave nothing behind
// outside the transaction that a second run does not overwrite (the
// Service's functions only set their result). After a commit was sent it
// never retries.
func (s *Store) WithTx(ctx context.Context, fn func(tx ordersvc.Tx) error) error {
	run := func(tx pgx.Tx) error {
		return fn(&pgTx{tx: tx, outbox: s.outbox})
	}
	err := s.outbox.WithTx(ctx, run)
	if errors.Is(err, outbox.ErrUnavailable) && !errors.Is(err, outbox.ErrOutcomeUnknown) && ctx.Err() == nil {
		err = s.outbox.WithTx(ctx, run)
	}
	return err
}

const orderColumns = `o.id, o.customer_id, o.currency, o.status, o.total_amount, o.version, o.created_at, o.updated_at`

const itemColumns = `li.id, li.product_id, li.product_type, li.quantity, li.unit_price, li.status`

// getOrderSQL reads an order and its line items in one statement, so in one
// snapshot.
const getOrderSQL = `SELECT ` + orderColumns + `, ` + itemColumns + `
FROM orders o JOIN order_line_items li ON li.order_id = o.id
WHERE o.id = $1
ORDER BY li.line_no`

// GetOrder returns the order with its line items, or ordersvc.ErrNotFound.
func (s *Store) GetOrder(ctx context.Context, id uuid.UUID) (order.Order, error) {
	rows, _ := s.pool.Query(ctx, getOrderSQL, id)
	orders, err := scanOrders(rows)
	if err != nil {
		return order.Order{}, pgstore.Unavailable(fmt.Errorf("pgorders: get order: %w", err))
	}
	if len(orders) == 0 {
		return order.Order{}, ordersvc.ErrNotFound
	}
	return orders[0], nil
}

// ListOrders returns a page of orders with their line items, in one
// statement: the page is selected on the (status|customer_id, created_at,
// id) indexes and joined with its line items.
func (s *Store) ListOrders(ctx context.Context, q ordersvc.ListQuery) ([]order.Order, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Status != "" {
		where = append(where, "status = "+arg(string(q.Status)))
	}
	if q.CustomerID != "" {
		where = append(where, "customer_id = "+arg(q.CustomerID))
	}
	if q.After != nil {
		where = append(where, "(created_at, id) < ("+arg(q.After.CreatedAt)+", "+arg(q.After.ID)+")")
	}
	cond := ""
	if len(where) > 0 {
		cond = "WHERE " + strings.Join(where, " AND ")
	}
	// Only placeholders are spliced in; every value is a parameter.
	query := `WITH page AS (
	SELECT * FROM orders ` + cond + `
	ORDER BY created_at DESC, id DESC
	LIMIT ` + arg(q.Limit) + `)
SELECT ` + orderColumns + `, ` + itemColumns + `
FROM page o JOIN order_line_items li ON li.order_id = o.id
ORDER BY o.created_at DESC, o.id DESC, li.line_no`
	rows, _ := s.pool.Query(ctx, query, args...)
	orders, err := scanOrders(rows)
	if err != nil {
		return nil, pgstore.Unavailable(fmt.Errorf("pgorders: list orders: %w", err))
	}
	return orders, nil
}

// scanOrders reads rows of orderColumns followed by itemColumns, grouped by
// order, and closes rows.
func scanOrders(rows pgx.Rows) ([]order.Order, error) {
	defer rows.Close()
	var out []order.Order
	for rows.Next() {
		var (
			o  order.Order
			li order.LineItem
		)
		if err := rows.Scan(&o.ID, &o.CustomerID, &o.Currency, &o.Status, &o.TotalAmount, &o.Version,
			&o.CreatedAt, &o.UpdatedAt,
			&li.ID, &li.ProductID, &li.ProductType, &li.Quantity, &li.UnitPrice, &li.Status); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].ID != o.ID {
			o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
			out = append(out, o)
		}
		last := &out[len(out)-1]
		last.LineItems = append(last.LineItems, li)
	}
	return out, rows.Err()
}

const listTransitionsSQL = `
SELECT id, order_id, line_item_id, coalesce(from_status, ''), to_status, reason, actor, automatic, event_id, created_at
FROM order_status_transitions
WHERE order_id = $1
ORDER BY id`

// ListTransitions returns the order's audit trail in the order it was
// written, or ordersvc.ErrNotFound.
func (s *Store) ListTransitions(ctx context.Context, orderID uuid.UUID) ([]order.Transition, error) {
	rows, _ := s.pool.Query(ctx, listTransitionsSQL, orderID)
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (order.Transition, error) {
		var (
			t    order.Transition
			item pgtype.UUID
		)
		err := row.Scan(&t.ID, &t.OrderID, &item, &t.From, &t.To, &t.Reason, &t.Actor, &t.Automatic, &t.EventID, &t.CreatedAt)
		if item.Valid {
			id := uuid.UUID(item.Bytes)
			t.LineItemID = &id
		}
		t.CreatedAt = t.CreatedAt.UTC()
		return t, err
	})
	if err != nil {
		return nil, pgstore.Unavailable(fmt.Errorf("pgorders: list transitions: %w", err))
	}
	if len(ts) == 0 {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)`, orderID).Scan(&exists); err != nil {
			return nil, pgstore.Unavailable(fmt.Errorf("pgorders: list transitions: %w", err))
		}
		if !exists {
			return nil, ordersvc.ErrNotFound
		}
	}
	return ts, nil
}

// pgTx is one transaction of the store.
type pgTx struct {
	tx     pgx.Tx
	outbox *outbox.Client[pgx.Tx]
}

const lockOrderSQL = `SELECT ` + orderColumns + `, o.last_event_sequence FROM orders o WHERE o.id = $1 FOR UPDATE`

const loadItemsSQL = `SELECT ` + itemColumns + ` FROM order_line_items li WHERE li.order_id = $1 ORDER BY li.line_no`

// LockOrder locks the order row, then reads its line items, in one round
// trip. The line items are read by a later statement than the lock, so they
// are as the previous holder of the lock committed them.
func (t *pgTx) LockOrder(ctx context.Context, id uuid.UUID) (order.Order, int64, error) {
	b := &pgx.Batch{}
	b.Queue(lockOrderSQL, [16]byte(id))
	b.Queue(loadItemsSQL, [16]byte(id))
	br := t.tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()

	var (
		o         order.Order
		lastEvent int64
	)
	err := br.QueryRow().Scan((*[16]byte)(&o.ID), &o.CustomerID, &o.Currency, &o.Status, &o.TotalAmount, &o.Version,
		&o.CreatedAt, &o.UpdatedAt, &lastEvent)
	if errors.Is(err, pgx.ErrNoRows) {
		return order.Order{}, 0, ordersvc.ErrNotFound
	} else if err != nil {
		return order.Order{}, 0, fmt.Errorf("pgorders: lock order: %w", err)
	}
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	rows, err := br.Query()
	if err != nil {
		return order.Order{}, 0, fmt.Errorf("pgorders: load line items: %w", err)
	}
	o.LineItems, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (order.LineItem, error) {
		var li order.LineItem
		err := row.Scan((*[16]byte)(&li.ID), &li.ProductID, &li.ProductType, &li.Quantity, &li.UnitPrice, &li.Status)
		return li, err
	})
	if err != nil {
		return order.Order{}, 0, fmt.Errorf("pgorders: load line items: %w", err)
	}
	if err := br.Close(); err != nil {
		return order.Order{}, 0, fmt.Errorf("pgorders: lock order: %w", err)
	}
	return o, lastEvent, nil
}

const insertOrderSQL = `
INSERT INTO orders (id, customer_id, currency, status, total_amount, version, created_at, updated_at, last_event_sequence)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

const insertItemsSQL = `
INSERT INTO order_line_items (id, order_id, line_no, product_id, product_type, quantity, unit_price, status)
SELECT u.id, $1, u.line_no - 1, u.product_id, u.product_type, u.quantity, u.unit_price, u.status
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
	WITH ORDINALITY AS u(id, product_id, product_type, quantity, unit_price, status, line_no)`

// InsertOrder writes the order, its line items and the audit rows in one
// round trip.
func (t *pgTx) InsertOrder(ctx context.Context, o *order.Order, lastEvent int64, audit []order.Transition) error {
	n := len(o.LineItems)
	ids := make([][16]byte, n)
	products, types, statuses := make([]string, n), make([]string, n), make([]string, n)
	quantities, prices := make([]int64, n), make([]int64, n)
	for i, li := range o.LineItems {
		ids[i], products[i], types[i], statuses[i] = li.ID, li.ProductID, string(li.ProductType), string(li.Status)
		quantities[i], prices[i] = li.Quantity, li.UnitPrice
	}
	b := &pgx.Batch{}
	b.Queue(insertOrderSQL, [16]byte(o.ID), o.CustomerID, o.Currency, string(o.Status), o.TotalAmount, o.Version, o.CreatedAt, o.UpdatedAt, lastEvent)
	b.Queue(insertItemsSQL, [16]byte(o.ID), ids, products, types, quantities, prices, statuses)
	queueTransitions(b, audit)
	br := t.tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("pgorders: insert order: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("pgorders: insert line items: %w", err)
	}
	if len(audit) > 0 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("pgorders: insert transitions: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("pgorders: insert order: %w", err)
	}
	return nil
}

const updateOrderSQL = `
UPDATE orders SET status = $2, total_amount = $3, version = $4, updated_at = $5, last_event_sequence = $6
WHERE id = $1 AND version = $4 - 1`

const updateItemsSQL = `
UPDATE order_line_items li SET status = u.status
FROM unnest($2::uuid[], $3::text[]) AS u(id, status)
WHERE li.id = u.id AND li.order_id = $1`

// UpdateOrder writes the order's new state, its moved line items and the
// audit rows in one round trip. The audit rows follow the version-checked
// update in the batch; when that update finds another version, UpdateOrder
// returns ErrVersionConflict and the caller rolls the transaction back.
func (t *pgTx) UpdateOrder(ctx context.Context, o *order.Order, items []order.LineItem, lastEvent int64, audit []order.Transition) error {
	b := &pgx.Batch{}
	b.Queue(updateOrderSQL, [16]byte(o.ID), string(o.Status), o.TotalAmount, o.Version, o.UpdatedAt, lastEvent)
	if len(items) > 0 {
		ids, statuses := make([][16]byte, len(items)), make([]string, len(items))
		for i, li := range items {
			ids[i], statuses[i] = li.ID, string(li.Status)
		}
		b.Queue(updateItemsSQL, [16]byte(o.ID), ids, statuses)
	}
	queueTransitions(b, audit)
	br := t.tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("pgorders: update order: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return ordersvc.ErrVersionConflict
	}
	if len(items) > 0 {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("pgorders: update line items: %w", err)
		}
		if n := tag.RowsAffected(); n != int64(len(items)) {
			return fmt.Errorf("pgorders: updated %d of %d line items of order %s", n, len(items), o.ID)
		}
	}
	if len(audit) > 0 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("pgorders: insert transitions: %w", err)
		}
	}
	return br.Close()
}

const insertTransitionsSQL = `
INSERT INTO order_status_transitions
	(order_id, line_item_id, from_status, to_status, reason, actor, automatic, event_id, created_at)
SELECT u.order_id, u.line_item_id, u.from_status, u.to_status, u.reason, u.actor, u.automatic, u.event_id, u.created_at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::boolean[],
	$8::uuid[], $9::timestamptz[])
	WITH ORDINALITY AS u(order_id, line_item_id, from_status, to_status, reason, actor, automatic,
	event_id, created_at, ord)
ORDER BY u.ord`

// queueTransitions queues the INSERT of the audit rows, one statement for
// all of them, in b; nothing when there are none. Their ids follow the
// order of ts.
func queueTransitions(b *pgx.Batch, ts []order.Transition) {
	if len(ts) == 0 {
		return
	}
	n := len(ts)
	orders, events := make([][16]byte, n), make([][16]byte, n)
	items := make([]pgtype.UUID, n)
	from := make([]pgtype.Text, n)
	to, reasons, actors := make([]string, n), make([]string, n), make([]string, n)
	automatic := make([]bool, n)
	at := make([]time.Time, n)
	for i, tr := range ts {
		orders[i], events[i] = tr.OrderID, tr.EventID
		if tr.LineItemID != nil {
			items[i] = pgtype.UUID{Bytes: *tr.LineItemID, Valid: true}
		}
		from[i] = pgtype.Text{String: string(tr.From), Valid: tr.From != ""}
		to[i], reasons[i], actors[i] = string(tr.To), tr.Reason, tr.Actor
		automatic[i], at[i] = tr.Automatic, tr.CreatedAt
	}
	b.Queue(insertTransitionsSQL, orders, items, from, to, reasons, actors, automatic, events, at)
}

// Enqueue writes events to the outbox in this transaction.
func (t *pgTx) Enqueue(ctx context.Context, events []outbox.Event) ([]outbox.Enqueued, error) {
	return t.outbox.EnqueueTx(ctx, t.tx, events...)
}

const claimKeySQL = `
INSERT INTO order_idempotency_keys (key, operation, request_hash, order_id, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key) DO NOTHING`

const getKeySQL = `
SELECT operation, request_hash, order_id, response, created_at
FROM order_idempotency_keys WHERE key = $1`

// ClaimIdempotencyKey inserts the key unless it exists. A transaction that
// has inserted it and not yet ended makes the insert wait; if it commits,
// the insert does nothing and the next statement reads its row.
func (t *pgTx) ClaimIdempotencyKey(ctx context.Context, k ordersvc.IdempotencyKey) (ordersvc.IdempotencyKey, bool, error) {
	for range 3 {
		tag, err := t.tx.Exec(ctx, claimKeySQL, k.Key, k.Operation, k.RequestHash, k.OrderID, k.CreatedAt)
		if err != nil {
			return ordersvc.IdempotencyKey{}, false, fmt.Errorf("pgorders: claim idempotency key: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return k, true, nil
		}
		stored := ordersvc.IdempotencyKey{Key: k.Key}
		err = t.tx.QueryRow(ctx, getKeySQL, k.Key).Scan(&stored.Operation, &stored.RequestHash, &stored.OrderID,
			&stored.Response, &stored.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // deleted in between: claim again
		} else if err != nil {
			return ordersvc.IdempotencyKey{}, false, fmt.Errorf("pgorders: read idempotency key: %w", err)
		}
		stored.CreatedAt = stored.CreatedAt.UTC()
		return stored, false, nil
	}
	return ordersvc.IdempotencyKey{}, false, fmt.Errorf("pgorders: idempotency key %q keeps disappearing", k.Key)
}

// SetIdempotencyResponse records the response of the request that claimed
// key in this transaction.
func (t *pgTx) SetIdempotencyResponse(ctx context.Context, key string, response []byte) error {
	tag, err := t.tx.Exec(ctx, `UPDATE order_idempotency_keys SET response = $2 WHERE key = $1 AND response IS NULL`,
		key, string(response))
	if err != nil {
		return fmt.Errorf("pgorders: set idempotency response: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("pgorders: idempotency key %q was not claimed in this transaction", key)
	}
	return nil
}
