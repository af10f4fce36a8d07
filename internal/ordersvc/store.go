package ordersvc

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
)

// Errors a Store returns; the Service turns them into *order.Error values.
var (
	// ErrNotFound: no order has the id.
	ErrNotFound = errors.New("ordersvc: not found")
	// ErrVersionConflict: UpdateOrder found the order at another version
	// than the one it was loaded at. With the row lock LockOrder takes it
	// cannot happen; it is the second line of defence.
	ErrVersionConflict = errors.New("ordersvc: order changed concurrently")
)

// Store is the storage the Service runs on, implemented by the pgorders
// (PostgreSQL) and sqliteorders (SQLite) packages. It is exported so that
// stores can live in packages of their own; applications use Service.
// Every store passes the suite in package ordersvctest.
type Store interface {
	// WithTx runs fn in a new transaction and commits it when fn returns
	// nil; otherwise it rolls back (also after ctx is cancelled) and returns
	// fn's error unchanged. A store may run fn a second time, in a new
	// transaction, when the first one was lost before its commit and so
	// wrote nothing (pgorders does, on a lost connection): fn must leave
	// nothing outside the transaction that a second run does not overwrite.
	WithTx(ctx context.Context, fn func(tx Tx) error) error

	// GetOrder returns the order with its line items, or ErrNotFound.
	GetOrder(ctx context.Context, id uuid.UUID) (order.Order, error)
	// ListOrders returns up to q.Limit orders matching q, newest first
	// (created_at, then id, descending), with their line items.
	ListOrders(ctx context.Context, q ListQuery) ([]order.Order, error)
	// ListTransitions returns the order's audit trail in the order it was
	// written, or ErrNotFound if there is no such order.
	ListTransitions(ctx context.Context, orderID uuid.UUID) ([]order.Transition, error)
}

// Tx is one transaction of a Store. Its methods are not safe for concurrent
// use. The audit rows passed to InsertOrder and UpdateOrder are appended in
// order; their ID fields are ignored (the store numbers them). They travel
// with the order's own writes so that a store can send them together (one
// round trip on PostgreSQL).
type Tx interface {
	// LockOrder loads the order with its line items (in creation order) and
	// the sequence of its last event, and locks it until the transaction
	// ends, so that requests on one order take turns and its events'
	// sequence follows commit order. Returns ErrNotFound.
	LockOrder(ctx context.Context, id uuid.UUID) (o order.Order, lastEvent int64, err error)
	// InsertOrder writes a new order and its line items, with lastEvent as
	// the sequence of its last event, and appends the audit rows audit.
	InsertOrder(ctx context.Context, o *order.Order, lastEvent int64, audit []order.Transition) error
	// UpdateOrder writes o's status, total, version and update time, the
	// sequence of its last event, and the status of each of items, and
	// appends the audit rows audit, provided the stored order is still at
	// version o.Version-1; otherwise it returns ErrVersionConflict.
	UpdateOrder(ctx context.Context, o *order.Order, items []order.LineItem, lastEvent int64, audit []order.Transition) error
	// Enqueue writes events to the outbox in this transaction
	// (outbox.Client.EnqueueTx).
	Enqueue(ctx context.Context, events []outbox.Event) ([]outbox.Enqueued, error)
	// ClaimIdempotencyKey stores k unless its key is stored already, and
	// reports whether it did; if not, it returns the stored record. A
	// concurrent transaction that has claimed the same key is waited for.
	ClaimIdempotencyKey(ctx context.Context, k IdempotencyKey) (stored IdempotencyKey, claimed bool, err error)
	// SetIdempotencyResponse records the response of the request that
	// claimed key in this transaction.
	SetIdempotencyResponse(ctx context.Context, key string, response []byte) error
}

// IdempotencyKey is a row of order_idempotency_keys: the first request made
// with an Idempotency-Key and the response it got.
type IdempotencyKey struct {
	Key       string
	Operation string // OpCreateOrder or OpConfirmPayment
	// RequestHash is the SHA-256 of the canonical encoding of the request
	// (operation, actor, order id for a payment, body).
	RequestHash []byte
	OrderID     uuid.UUID
	// Response is the JSON of the order the request returned; nil only
	// inside the transaction that claimed the key.
	Response  []byte
	CreatedAt time.Time
}

// Operations an idempotency key can be used for.
const (
	OpCreateOrder    = "create_order"
	OpConfirmPayment = "confirm_payment"
)

// MaxIdempotencyKeyLen bounds an Idempotency-Key, in bytes.
const MaxIdempotencyKeyLen = 255

// ListQuery selects orders for Store.ListOrders.
type ListQuery struct {
	Status     order.Status // "" for any
	CustomerID string       // "" for any
	// After, when set, selects only orders strictly after the cursor in
	// list order (older, or as old with a smaller id).
	After *Cursor
	Limit int
}

// Cursor is a position in the list order of orders.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// Migration is the state of one schema migration of a store.
type Migration = migration.Migration

// Migrations is the state of every migration of a store, oldest first.
type Migrations = migration.List

// Migrator is what both stores offer for herald migrate: they apply their
// own embedded migrations and keep their own version table,
// herald_orders_migrations, apart from the outbox's.
type Migrator = migration.Migrator

// MigrationTable is the goose version table of the orders schema in both
// databases.
const MigrationTable = "herald_orders_migrations"

// The orders service's names on the outbox engine, whose own defaults are
// neutral.
const (
	// OutboxName names the orders' outbox. Its tables keep the names they
	// had before outboxes were named: order_outbox, order_outbox_dlq and
	// order_outbox_sequences.
	OutboxName = "order_outbox"
	// EventSource is the CloudEvents source of the orders' events.
	EventSource = "/herald/orders"
	// Stream and SubjectPrefix are the JetStream stream and the subjects
	// the orders' events are published on (orders.order.created, …).
	Stream        = "ORDERS"
	SubjectPrefix = "orders."
	// EventsName is the Kafka topic, the RabbitMQ exchange and the Redis
	// stream the orders' events are published to.
	EventsName = "orders.events"
)
