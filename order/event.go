package order

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event types: the names consumers subscribe to.
const (
	EventOrderCreated          = "order.created"
	EventPaymentConfirmed      = "order.payment_confirmed"
	EventOrderStatusChanged    = "order.status_changed"
	EventLineItemStatusChanged = "line_item.status_changed"
)

// Event is one domain event a request emits, ready for the outbox: its
// aggregate is the order (AggregateType, OrderID; OrderID is also the
// CloudEvents subject) and Data is its payload.
type Event struct {
	Type    string
	OrderID uuid.UUID
	// Data is an OrderCreated, PaymentConfirmed, OrderStatusChanged or
	// LineItemStatusChanged.
	Data any
	// Change is the index, in the changes passed to Events, of the
	// transition this event records (its audit row stores the event's id),
	// or -1 when it records none.
	Change int
}

// Payload returns Data as JSON.
func (e Event) Payload() (json.RawMessage, error) {
	return json.Marshal(e.Data)
}

// LineItemData describes a line item in an event.
type LineItemData struct {
	ID          uuid.UUID   `json:"id"`
	ProductID   string      `json:"product_id"`
	ProductType ProductType `json:"product_type"`
	Quantity    int64       `json:"quantity"`
	UnitPrice   int64       `json:"unit_price"`
	Amount      int64       `json:"amount"` // quantity × unit price
	Status      Status      `json:"status"`
}

// OrderCreated is the data of order.created: the whole new order.
type OrderCreated struct {
	OrderID     uuid.UUID      `json:"order_id"`
	CustomerID  string         `json:"customer_id"`
	Currency    string         `json:"currency"`
	Status      Status         `json:"status"`
	TotalAmount int64          `json:"total_amount"`
	Version     int64          `json:"version"`
	CreatedAt   time.Time      `json:"created_at"`
	LineItems   []LineItemData `json:"line_items"`
}

// PaymentConfirmed is the data of order.payment_confirmed.
type PaymentConfirmed struct {
	OrderID     uuid.UUID `json:"order_id"`
	CustomerID  string    `json:"customer_id"`
	PaymentID   string    `json:"payment_id"`
	Amount      int64     `json:"amount"`
	Currency    string    `json:"currency"`
	Actor       string    `json:"actor"`
	Version     int64     `json:"version"`
	ConfirmedAt time.Time `json:"confirmed_at"`
}

// OrderStatusChanged is the data of order.status_changed.
type OrderStatusChanged struct {
	OrderID     uuid.UUID `json:"order_id"`
	CustomerID  string    `json:"customer_id"`
	From        Status    `json:"from"`
	To          Status    `json:"to"`
	Reason      string    `json:"reason"`
	Actor       string    `json:"actor"`
	Automatic   bool      `json:"automatic"`
	TotalAmount int64     `json:"total_amount"`
	Currency    string    `json:"currency"`
	Version     int64     `json:"version"`
	ChangedAt   time.Time `json:"changed_at"`
}

// LineItemStatusChanged is the data of line_item.status_changed.
type LineItemStatusChanged struct {
	OrderID     uuid.UUID   `json:"order_id"`
	CustomerID  string      `json:"customer_id"`
	LineItemID  uuid.UUID   `json:"line_item_id"`
	ProductID   string      `json:"product_id"`
	ProductType ProductType `json:"product_type"`
	Quantity    int64       `json:"quantity"`
	UnitPrice   int64       `json:"unit_price"`
	Amount      int64       `json:"amount"`
	Currency    string      `json:"currency"`
	From        Status      `json:"from"`
	To          Status      `json:"to"`
	Reason      string      `json:"reason"`
	Actor       string      `json:"actor"`
	Automatic   bool        `json:"automatic"`
	Version     int64       `json:"version"`
	ChangedAt   time.Time   `json:"changed_at"`
}

// CreatedEvent returns the order.created event of a new order.
func CreatedEvent(o *Order) Event {
	items := make([]LineItemData, len(o.LineItems))
	for i := range o.LineItems {
		li := &o.LineItems[i]
		items[i] = LineItemData{
			ID:          li.ID,
			ProductID:   li.ProductID,
			ProductType: li.ProductType,
			Quantity:    li.Quantity,
			UnitPrice:   li.UnitPrice,
			Amount:      li.Amount(),
			Status:      li.Status,
		}
	}
	return Event{
		Type:    EventOrderCreated,
		OrderID: o.ID,
		Change:  -1,
		Data: OrderCreated{
			OrderID:     o.ID,
			CustomerID:  o.CustomerID,
			Currency:    o.Currency,
			Status:      o.Status,
			TotalAmount: o.TotalAmount,
			Version:     o.Version,
			CreatedAt:   o.CreatedAt,
			LineItems:   items,
		},
	}
}

// Events maps the changes of one request, applied to o (the order as the
// request left it), to the events to enqueue, in order: one status-changed
// event per change, each preceded, for the change a payment confirmation
// made, by order.payment_confirmed. A payment confirmation therefore emits
// order.payment_confirmed, order.status_changed, then one
// line_item.status_changed per line item.
func Events(o *Order, changes []Change) []Event {
	events := make([]Event, 0, len(changes)+1)
	for i := range changes {
		c := &changes[i]
		if c.Payment != nil {
			events = append(events, Event{
				Type:    EventPaymentConfirmed,
				OrderID: o.ID,
				Change:  -1,
				Data: PaymentConfirmed{
					OrderID:     o.ID,
					CustomerID:  o.CustomerID,
					PaymentID:   c.Payment.PaymentID,
					Amount:      c.Payment.Amount,
					Currency:    c.Payment.Currency,
					Actor:       c.Actor,
					Version:     o.Version,
					ConfirmedAt: c.At,
				},
			})
		}
		if c.OrderLevel() {
			events = append(events, Event{
				Type:    EventOrderStatusChanged,
				OrderID: o.ID,
				Change:  i,
				Data: OrderStatusChanged{
					OrderID:     o.ID,
					CustomerID:  o.CustomerID,
					From:        c.From,
					To:          c.To,
					Reason:      c.Reason,
					Actor:       c.Actor,
					Automatic:   c.Automatic,
					TotalAmount: o.TotalAmount,
					Currency:    o.Currency,
					Version:     o.Version,
					ChangedAt:   c.At,
				},
			})
			continue
		}
		d := LineItemStatusChanged{
			OrderID:    o.ID,
			CustomerID: o.CustomerID,
			LineItemID: c.LineItemID,
			Currency:   o.Currency,
			From:       c.From,
			To:         c.To,
			Reason:     c.Reason,
			Actor:      c.Actor,
			Automatic:  c.Automatic,
			Version:    o.Version,
			ChangedAt:  c.At,
		}
		if li := o.LineItem(c.LineItemID); li != nil {
			d.ProductID = li.ProductID
			d.ProductType = li.ProductType
			d.Quantity = li.Quantity
			d.UnitPrice = li.UnitPrice
			d.Amount = li.Amount()
		}
		events = append(events, Event{
			Type:    EventLineItemStatusChanged,
			OrderID: o.ID,
			Change:  i,
			Data:    d,
		})
	}
	return events
}
