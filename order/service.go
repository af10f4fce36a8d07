package order

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Service is the orders service as the HTTP API and the command line use it.
// Every method that changes an order opens one transaction that locks the
// order row first, writes the order, one Transition per Change and the
// events to the outbox, and commits them together: a change is never
// committed without its events, nor an event without its change.
//
// Errors are *Error values: EINVALID for bad input (nothing written),
// ENOTFOUND for an unknown order or line item, ECONFLICT for a transition
// the machine refuses or an idempotency key reused with another body,
// EPRECONDITION when RequestOptions.IfMatch differs from the order's version.
type Service interface {
	CreateOrder(ctx context.Context, req CreateOrder, opts RequestOptions) (Order, error)
	GetOrder(ctx context.Context, id uuid.UUID) (Order, error)
	ListOrders(ctx context.Context, f ListFilter) (Page, error)
	ConfirmPayment(ctx context.Context, id uuid.UUID, req ConfirmPayment, opts RequestOptions) (Order, error)
	TransitionOrder(ctx context.Context, id uuid.UUID, req TransitionRequest, opts RequestOptions) (Order, error)
	TransitionLineItem(ctx context.Context, id, itemID uuid.UUID, req TransitionRequest, opts RequestOptions) (Order, error)
	// ListTransitions returns the order's audit trail, oldest first.
	ListTransitions(ctx context.Context, id uuid.UUID) ([]Transition, error)
}

// RequestOptions carry what comes with a request besides its body.
type RequestOptions struct {
	// Actor is who asked (the authenticated principal); required.
	Actor string
	// IdempotencyKey, when set on CreateOrder or ConfirmPayment, makes a
	// repeat of the same request return the first result instead of acting
	// twice; the same key with a different body is ECONFLICT.
	IdempotencyKey string
	// IfMatch, when non-nil, is the version the caller expects the order to
	// have; a different version is EPRECONDITION and nothing changes.
	IfMatch *int64
}

// ListFilter selects orders for ListOrders. Results are newest first.
type ListFilter struct {
	Status     Status // "" for any
	CustomerID string // "" for any
	Cursor     string // from Page.NextCursor; "" for the first page
	Limit      int    // 1–100; 0 means 20
}

// Page is one page of orders.
type Page struct {
	Orders     []Order `json:"orders"`
	NextCursor string  `json:"next_cursor,omitempty"` // "" on the last page
}

// Transition is one row of the audit trail (order_status_transitions).
type Transition struct {
	ID         int64      `json:"id"`
	OrderID    uuid.UUID  `json:"order_id"`
	LineItemID *uuid.UUID `json:"line_item_id"` // nil for an order-level transition
	From       Status     `json:"from"`
	To         Status     `json:"to"`
	Reason     string     `json:"reason,omitempty"`
	Actor      string     `json:"actor"`
	Automatic  bool       `json:"automatic"`
	EventID    uuid.UUID  `json:"event_id"` // the outbox event this transition emitted
	CreatedAt  time.Time  `json:"created_at"`
}
