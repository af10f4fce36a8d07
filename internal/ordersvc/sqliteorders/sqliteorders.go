// Package sqliteorders is the SQLite store of the orders service: an
// ordersvc.Store on the database handle of the outbox's SQLite driver
// (sqlitestore), whose transactions enqueue events on the same transaction.
//
//	driver, err := sqlitestore.Open(path, sqlitestore.Config{Name: ordersvc.OutboxName})
//	store := sqliteorders.New(driver.DB(), outbox.NewClient[*sql.Tx](driver))
//	if err := driver.Migrate(ctx); err != nil { ... }
//	if err := store.Migrate(ctx); err != nil { ... }
//	svc := ordersvc.New(store, ordersvc.Config{})
//
// Every read-write transaction of that handle holds SQLite's write lock from
// BEGIN (BEGIN IMMEDIATE), so requests take turns and LockOrder need not lock
// anything more.
package sqliteorders

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore/sqlitestmt"
)

// Store is the SQLite orders store. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	outbox *outbox.Client[*sql.Tx]
	stmts  *sqlitestmt.Cache // the hot queries, and the reads'
}

var (
	_ ordersvc.Store    = (*Store)(nil)
	_ ordersvc.Migrator = (*Store)(nil)
)

// New returns a store on db that enqueues events with client. db must be the
// handle of client's driver (sqlitestore.Driver.DB), so that the events are
// written in the store's transactions. Call Migrate (and the outbox driver's
// Migrate) before first use.
func New(db *sql.DB, client *outbox.Client[*sql.Tx]) *Store {
	return &Store{db: db, outbox: client, stmts: sqlitestmt.New(db, hotQueries...)}
}

// Close closes the store's prepared statements; the database stays open.
func (s *Store) Close() error { return s.stmts.Close() }

// hotQueries are the statements of the transactions, prepared once, outside
// any transaction (see package sqlitestmt).
var hotQueries = []string{
	lockOrderSQL, insertOrderSQL, insertItemSQL, updateOrderSQL, updateItemSQL,
	insertTransitionSQL, claimKeySQL, getKeySQL, setResponseSQL,
}

// WithTx runs fn in a read-write transaction of the outbox client's driver
// (see outbox.Client.WithTx): it commits when fn returns nil; otherwise, or
// if fn panics, it rolls back. fn's error is returned unchanged.
func (s *Store) WithTx(ctx context.Context, fn func(tx ordersvc.Tx) error) error {
	_ = s.stmts.Prepare(ctx) // before the transaction; it fails harmlessly before Migrate
	return s.outbox.WithTx(ctx, func(tx *sql.Tx) error {
		return fn(&sqliteTx{s: s, tx: tx, q: s.stmts.Tx(tx)})
	})
}

const orderColumns = `o.id, o.customer_id, o.currency, o.status, o.total_amount, o.version, o.created_at, o.updated_at`

const itemColumns = `li.id, li.product_id, li.product_type, li.quantity, li.unit_price, li.status`

// getOrderSQL reads an order and its line items in one statement, so in one
// snapshot.
const getOrderSQL = `SELECT ` + orderColumns + `, ` + itemColumns + `
FROM orders o JOIN order_line_items li ON li.order_id = o.id
WHERE o.id = ?1
ORDER BY li.line_no`

// GetOrder returns the order with its line items, or ordersvc.ErrNotFound.
func (s *Store) GetOrder(ctx context.Context, id uuid.UUID) (order.Order, error) {
	st, err := s.stmts.Stmt(ctx, getOrderSQL) //nolint:sqlclosecheck // kept in s.stmts; Close closes it
	if err != nil {
		return order.Order{}, fmt.Errorf("sqliteorders: get order: %w", err)
	}
	rows, err := st.QueryContext(ctx, id.String())
	if err != nil {
		return order.Order{}, fmt.Errorf("sqliteorders: get order: %w", err)
	}
	orders, err := scanOrders(rows, nil)
	if err != nil {
		return order.Order{}, fmt.Errorf("sqliteorders: get order: %w", err)
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
	if q.Status != "" {
		args = append(args, sql.Named("status", string(q.Status)))
		where = append(where, "status = :status")
	}
	if q.CustomerID != "" {
		args = append(args, sql.Named("customer", q.CustomerID))
		where = append(where, "customer_id = :customer")
	}
	if q.After != nil {
		args = append(args, sql.Named("at", q.After.CreatedAt.UnixMicro()), sql.Named("id", q.After.ID.String()))
		where = append(where, "(created_at < :at OR (created_at = :at AND id < :id))")
	}
	args = append(args, sql.Named("limit", q.Limit))
	cond := ""
	if len(where) > 0 {
		cond = "WHERE " + strings.Join(where, " AND ")
	}
	// Only fixed conditions are spliced in; every value is a parameter.
	query := `WITH page AS (
	SELECT * FROM orders ` + cond + `
	ORDER BY created_at DESC, id DESC
	LIMIT :limit)
SELECT ` + orderColumns + `, ` + itemColumns + `
FROM page o JOIN order_line_items li ON li.order_id = o.id
ORDER BY o.created_at DESC, o.id DESC, li.line_no`
	st, err := s.stmts.Stmt(ctx, query) //nolint:sqlclosecheck // kept in s.stmts; Close closes it
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: list orders: %w", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: list orders: %w", err)
	}
	orders, err := scanOrders(rows, nil)
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: list orders: %w", err)
	}
	return orders, nil
}

// scanOrders reads rows of orderColumns followed by itemColumns, grouped by
// order, and closes rows.
// scanOrders reads rows of orderColumns and itemColumns, followed by the
// order's last_event_sequence into lastEvent when lastEvent is not nil.
func scanOrders(rows *sql.Rows, lastEvent *int64) ([]order.Order, error) {
	defer func() { _ = rows.Close() }()
	var out []order.Order
	for rows.Next() {
		var (
			o                 order.Order
			li                order.LineItem
			created, updated  int64
			orderID, lineItem uuid.UUID
		)
		dest := []any{&orderID, &o.CustomerID, &o.Currency, &o.Status, &o.TotalAmount, &o.Version,
			&created, &updated,
			&lineItem, &li.ProductID, &li.ProductType, &li.Quantity, &li.UnitPrice, &li.Status}
		if lastEvent != nil {
			dest = append(dest, lastEvent)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		li.ID = lineItem
		if n := len(out); n == 0 || out[n-1].ID != orderID {
			o.ID, o.CreatedAt, o.UpdatedAt = orderID, fromMicros(created), fromMicros(updated)
			out = append(out, o)
		}
		last := &out[len(out)-1]
		last.LineItems = append(last.LineItems, li)
	}
	return out, rows.Err()
}

const listTransitionsSQL = `
SELECT id, line_item_id, coalesce(from_status, ''), to_status, reason, actor, automatic, event_id, created_at
FROM order_status_transitions
WHERE order_id = ?1
ORDER BY id`

// ListTransitions returns the order's audit trail in the order it was
// written, or ordersvc.ErrNotFound.
func (s *Store) ListTransitions(ctx context.Context, orderID uuid.UUID) (out []order.Transition, err error) {
	// One read transaction: the trail and the existence check see one
	// snapshot. A read-only transaction takes no write lock.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: list transitions: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, listTransitionsSQL, orderID.String())
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: list transitions: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			t    order.Transition
			item sql.Null[uuid.UUID]
			at   int64
		)
		if err := rows.Scan(&t.ID, &item, &t.From, &t.To, &t.Reason, &t.Actor, &t.Automatic, &t.EventID, &at); err != nil {
			return nil, fmt.Errorf("sqliteorders: list transitions: %w", err)
		}
		t.OrderID, t.CreatedAt = orderID, fromMicros(at)
		if item.Valid {
			t.LineItemID = &item.V
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteorders: list transitions: %w", err)
	}
	if len(out) == 0 {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE id = ?1)`, orderID.String()).Scan(&exists); err != nil {
			return nil, fmt.Errorf("sqliteorders: list transitions: %w", err)
		}
		if !exists {
			return nil, ordersvc.ErrNotFound
		}
	}
	return out, nil
}

// sqliteTx is one transaction of the store.
type sqliteTx struct {
	s  *Store
	tx *sql.Tx
	q  sqlitestmt.Tx // tx, running the store's prepared statements
}

const lockOrderSQL = `SELECT ` + orderColumns + `, ` + itemColumns + `, o.last_event_sequence
FROM orders o JOIN order_line_items li ON li.order_id = o.id
WHERE o.id = ?1
ORDER BY li.line_no`

// LockOrder loads the order. The transaction holds the database's write
// lock already, so nobody can change the order until it ends.
func (t *sqliteTx) LockOrder(ctx context.Context, id uuid.UUID) (order.Order, int64, error) {
	rows, err := t.q.QueryContext(ctx, lockOrderSQL, id.String())
	if err != nil {
		return order.Order{}, 0, fmt.Errorf("sqliteorders: lock order: %w", err)
	}
	var lastEvent int64
	orders, err := scanOrders(rows, &lastEvent)
	if err != nil {
		return order.Order{}, 0, fmt.Errorf("sqliteorders: lock order: %w", err)
	}
	if len(orders) == 0 {
		return order.Order{}, 0, ordersvc.ErrNotFound
	}
	return orders[0], lastEvent, nil
}

const insertOrderSQL = `
INSERT INTO orders (id, customer_id, currency, status, total_amount, version, created_at, updated_at, last_event_sequence)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`

const insertItemSQL = `
INSERT INTO order_line_items (id, order_id, line_no, product_id, product_type, quantity, unit_price, status)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`

// InsertOrder writes the order, its line items and the audit rows.
func (t *sqliteTx) InsertOrder(ctx context.Context, o *order.Order, lastEvent int64, audit []order.Transition) error {
	if _, err := t.q.ExecContext(ctx, insertOrderSQL, o.ID.String(), o.CustomerID, o.Currency, string(o.Status), o.TotalAmount,
		o.Version, o.CreatedAt.UnixMicro(), o.UpdatedAt.UnixMicro(), lastEvent); err != nil {
		return fmt.Errorf("sqliteorders: insert order: %w", err)
	}
	oid := o.ID.String()
	for i, li := range o.LineItems {
		if _, err := t.q.ExecContext(ctx, insertItemSQL, li.ID.String(), oid, i, li.ProductID, string(li.ProductType),
			li.Quantity, li.UnitPrice, string(li.Status)); err != nil {
			return fmt.Errorf("sqliteorders: insert line item %d: %w", i, err)
		}
	}
	return t.insertTransitions(ctx, audit)
}

const updateOrderSQL = `
UPDATE orders SET status = ?2, total_amount = ?3, version = ?4, updated_at = ?5, last_event_sequence = ?6
WHERE id = ?1 AND version = ?4 - 1`

const updateItemSQL = `UPDATE order_line_items SET status = ?3 WHERE id = ?1 AND order_id = ?2`

// UpdateOrder writes the order's new state, its moved line items and the
// audit rows.
func (t *sqliteTx) UpdateOrder(ctx context.Context, o *order.Order, items []order.LineItem, lastEvent int64, audit []order.Transition) error {
	res, err := t.q.ExecContext(ctx, updateOrderSQL, o.ID.String(), string(o.Status), o.TotalAmount, o.Version, o.UpdatedAt.UnixMicro(), lastEvent)
	if err != nil {
		return fmt.Errorf("sqliteorders: update order: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqliteorders: update order: %w", err)
	} else if n != 1 {
		return ordersvc.ErrVersionConflict
	}
	oid := o.ID.String()
	for _, li := range items {
		res, err := t.q.ExecContext(ctx, updateItemSQL, li.ID.String(), oid, string(li.Status))
		if err != nil {
			return fmt.Errorf("sqliteorders: update line item %s: %w", li.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqliteorders: update line item %s: %w", li.ID, err)
		} else if n != 1 {
			return fmt.Errorf("sqliteorders: order %s has no line item %s", o.ID, li.ID)
		}
	}
	return t.insertTransitions(ctx, audit)
}

const insertTransitionSQL = `
INSERT INTO order_status_transitions
	(order_id, line_item_id, from_status, to_status, reason, actor, automatic, event_id, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)`

// insertTransitions appends the audit rows in order.
func (t *sqliteTx) insertTransitions(ctx context.Context, ts []order.Transition) error {
	for i, tr := range ts {
		var item, from sql.NullString
		if tr.LineItemID != nil {
			item = sql.NullString{String: tr.LineItemID.String(), Valid: true}
		}
		if tr.From != "" {
			from = sql.NullString{String: string(tr.From), Valid: true}
		}
		if _, err := t.q.ExecContext(ctx, insertTransitionSQL, tr.OrderID.String(), item, from, string(tr.To), tr.Reason, tr.Actor,
			tr.Automatic, tr.EventID.String(), tr.CreatedAt.UnixMicro()); err != nil {
			return fmt.Errorf("sqliteorders: insert transition %d: %w", i, err)
		}
	}
	return nil
}

// Enqueue writes events to the outbox in this transaction.
func (t *sqliteTx) Enqueue(ctx context.Context, events []outbox.Event) ([]outbox.Enqueued, error) {
	return t.s.outbox.EnqueueTx(ctx, t.tx, events...)
}

const claimKeySQL = `
INSERT INTO order_idempotency_keys (key, operation, request_hash, order_id, created_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (key) DO NOTHING`

const getKeySQL = `
SELECT operation, request_hash, order_id, response, created_at
FROM order_idempotency_keys WHERE key = ?1`

// ClaimIdempotencyKey inserts the key unless it exists. Transactions hold
// the write lock from BEGIN, so no other one can have claimed it and not
// committed.
func (t *sqliteTx) ClaimIdempotencyKey(ctx context.Context, k ordersvc.IdempotencyKey) (ordersvc.IdempotencyKey, bool, error) {
	res, err := t.q.ExecContext(ctx, claimKeySQL, k.Key, k.Operation, k.RequestHash, k.OrderID.String(), k.CreatedAt.UnixMicro())
	if err != nil {
		return ordersvc.IdempotencyKey{}, false, fmt.Errorf("sqliteorders: claim idempotency key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return ordersvc.IdempotencyKey{}, false, fmt.Errorf("sqliteorders: claim idempotency key: %w", err)
	} else if n == 1 {
		return k, true, nil
	}
	var (
		stored   = ordersvc.IdempotencyKey{Key: k.Key}
		response sql.NullString
		at       int64
	)
	if err := t.q.QueryRowContext(ctx, getKeySQL, k.Key).Scan(&stored.Operation, &stored.RequestHash, &stored.OrderID,
		&response, &at); err != nil {
		return ordersvc.IdempotencyKey{}, false, fmt.Errorf("sqliteorders: read idempotency key: %w", err)
	}
	if response.Valid {
		stored.Response = []byte(response.String)
	}
	stored.CreatedAt = fromMicros(at)
	return stored, false, nil
}

const setResponseSQL = `UPDATE order_idempotency_keys SET response = ?2 WHERE key = ?1 AND response IS NULL`

// SetIdempotencyResponse records the response of the request that claimed
// key in this transaction.
func (t *sqliteTx) SetIdempotencyResponse(ctx context.Context, key string, response []byte) error {
	res, err := t.q.ExecContext(ctx, setResponseSQL, key, string(response))
	if err != nil {
		return fmt.Errorf("sqliteorders: set idempotency response: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqliteorders: set idempotency response: %w", err)
	} else if n != 1 {
		return fmt.Errorf("sqliteorders: idempotency key %q was not claimed in this transaction", key)
	}
	return nil
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
