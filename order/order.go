// Package order is the pure domain of Herald's orders service: orders and
// their line items, the requests that create and change them, the state
// machines every status change passes, the changes a request makes and the
// events they emit, and the one error type with codes.
//
// It performs no I/O and imports no database, broker or HTTP package. The
// service layer loads an Order, applies a request to it here, and writes the
// new Order, one audit row per Change and the Events in one transaction.
package order

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// AggregateType is the outbox aggregate type of an order's events.
const AggregateType = "order"

// Status is the status of an order or of a line item. Which statuses a thing
// can be in, and how it moves between them, is set by its Machine.
type Status string

// Statuses of orders and line items (docs/STATE_MACHINES.md).
const (
	// Shared by the order machine and every line-item machine.
	StatusPending          Status = "pending"
	StatusPaymentConfirmed Status = "payment_confirmed"
	StatusCancelled        Status = "cancelled"

	// Order; StatusCompleted is also the service line items' end.
	StatusProcessing Status = "processing"
	StatusCompleted  Status = "completed"

	// Physical line items.
	StatusPreparing   Status = "preparing"
	StatusReadyToShip Status = "ready_to_ship"
	StatusShipped     Status = "shipped"
	StatusDelivered   Status = "delivered"

	// Digital line items.
	StatusAccessGranted   Status = "access_granted"
	StatusDownloaded      Status = "downloaded"
	StatusRefundRequested Status = "refund_requested"
	StatusRefunded        Status = "refunded"

	// Service line items.
	StatusBookingConfirmed Status = "booking_confirmed"
	StatusReminderSent     Status = "reminder_sent"
	StatusInProgress       Status = "in_progress"
	StatusNoShow           Status = "no_show"
)

// ProductType selects the state machine of a line item.
type ProductType string

// Product types.
const (
	ProductPhysical ProductType = "physical"
	ProductDigital  ProductType = "digital"
	ProductService  ProductType = "service"
)

// ProductTypes lists every product type, in documentation order.
func ProductTypes() []ProductType {
	return []ProductType{ProductPhysical, ProductDigital, ProductService}
}

// Valid reports whether pt is a known product type.
func (pt ProductType) Valid() bool {
	switch pt {
	case ProductPhysical, ProductDigital, ProductService:
		return true
	}
	return false
}

// Order is an order with its line items. Amounts are integer minor units of
// Currency (ISO 4217).
//
// TotalAmount is computed by the server: the sum of quantity × unit price of
// the line items. It is the amount a payment confirmation must match, so a
// line item cancelled while the order is still pending drops out of it; after
// payment it no longer changes.
//
// Version starts at 1 and grows by one with every successful request; the
// HTTP layer exposes it as the ETag checked by If-Match.
type Order struct {
	ID          uuid.UUID  `json:"id"`
	CustomerID  string     `json:"customer_id"`
	Currency    string     `json:"currency"`
	Status      Status     `json:"status"`
	TotalAmount int64      `json:"total_amount"`
	Version     int64      `json:"version"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	LineItems   []LineItem `json:"line_items"`
}

// LineItem is one product in an order. Its status follows the machine of
// its ProductType.
type LineItem struct {
	ID          uuid.UUID   `json:"id"`
	ProductID   string      `json:"product_id"`
	ProductType ProductType `json:"product_type"`
	Quantity    int64       `json:"quantity"`
	UnitPrice   int64       `json:"unit_price"`
	Status      Status      `json:"status"`
}

// Amount returns quantity × unit price. Validated line items cannot overflow
// (10,000 × 10^12 < 2^63).
func (li *LineItem) Amount() int64 { return li.Quantity * li.UnitPrice }

// LineItem returns the line item with the given id, or nil.
func (o *Order) LineItem(id uuid.UUID) *LineItem {
	for i := range o.LineItems {
		if o.LineItems[i].ID == id {
			return &o.LineItems[i]
		}
	}
	return nil
}

// CheckVersion returns EPRECONDITION unless the order is at version want
// (the If-Match precondition of a change request).
func (o *Order) CheckVersion(want int64) error {
	if o.Version != want {
		return Errorf(EPRECONDITION, "Order %s is at version %d, not %d.", o.ID, o.Version, want)
	}
	return nil
}

// clone returns a deep copy of o.
func (o *Order) clone() Order {
	c := *o
	c.LineItems = append([]LineItem(nil), o.LineItems...)
	return c
}

// IDFunc returns a new unique id. uuid.NewV7 is one.
type IDFunc func() (uuid.UUID, error)

// NewOrder validates req and builds the new pending order it asks for, at
// version 1, with ids from newID (uuid.NewV7 when nil) and both timestamps
// set to now (in UTC, truncated to microseconds so that every database
// stores it exactly). The total is computed here, never taken from the
// client.
//
// Returns EINVALID with field errors when req is invalid, and newID's error
// (an internal one) when it fails.
func NewOrder(req CreateOrder, newID IDFunc, now time.Time) (Order, error) {
	if err := req.Validate(); err != nil {
		return Order{}, err
	}
	if newID == nil {
		newID = uuid.NewV7
	}
	total, ok := req.total()
	if !ok { // Validate already refused it; kept for safety.
		return Order{}, Errorf(EINVALID, "The order total overflows.")
	}
	id, err := newID()
	if err != nil {
		return Order{}, fmt.Errorf("order: generating an order id: %w", err)
	}
	now = normalizeTime(now)
	o := Order{
		ID:          id,
		CustomerID:  req.CustomerID,
		Currency:    req.Currency,
		Status:      StatusPending,
		TotalAmount: total,
		Version:     1,
		CreatedAt:   now,
		UpdatedAt:   now,
		LineItems:   make([]LineItem, len(req.LineItems)),
	}
	for i, in := range req.LineItems {
		liID, err := newID()
		if err != nil {
			return Order{}, fmt.Errorf("order: generating a line item id: %w", err)
		}
		o.LineItems[i] = LineItem{
			ID:          liID,
			ProductID:   in.ProductID,
			ProductType: in.ProductType,
			Quantity:    in.Quantity,
			UnitPrice:   in.UnitPrice,
			Status:      StatusPending,
		}
	}
	return o, nil
}

// normalizeTime returns t in UTC, truncated to microseconds (PostgreSQL's
// precision), without a monotonic clock reading.
func normalizeTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}
