package order

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

// t0 is the creation time of every test order; t1, t2… follow by the minute.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

func tn(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

// seqIDs returns an IDFunc yielding 00000000-0000-0000-0000-000000000001, …02, …
func seqIDs() IDFunc {
	var n uint16
	return func() (uuid.UUID, error) {
		n++
		var u uuid.UUID
		u[14], u[15] = byte(n>>8), byte(n)
		return u, nil
	}
}

// id returns the n-th id seqIDs yields: the order is 1, its line items 2, 3…
func id(n int) uuid.UUID {
	var u uuid.UUID
	u[14], u[15] = byte(n>>8), byte(n)
	return u
}

func item(pt ProductType, qty, price int64) CreateLineItem {
	return CreateLineItem{ProductID: "p-" + string(pt), ProductType: pt, Quantity: qty, UnitPrice: price}
}

// newOrder creates a pending EUR order for customer c-42 with the items.
func newOrder(t *testing.T, items ...CreateLineItem) Order {
	t.Helper()
	o, err := NewOrder(CreateOrder{CustomerID: "c-42", Currency: "EUR", LineItems: items}, seqIDs(), t0)
	if err != nil {
		t.Fatalf("NewOrder: %v", err)
	}
	return o
}

// paidOrder creates an order with the items and confirms its payment.
func paidOrder(t *testing.T, items ...CreateLineItem) Order {
	t.Helper()
	o := newOrder(t, items...)
	if _, err := o.ConfirmPayment(ConfirmPayment{PaymentID: "pay_1", Amount: o.TotalAmount, Currency: "EUR"}, "tester", tn(1)); err != nil {
		t.Fatalf("ConfirmPayment: %v", err)
	}
	return o
}

// move applies line-item transitions that must succeed and returns the
// changes of the last one.
func move(t *testing.T, o *Order, itemID uuid.UUID, to ...Status) []Change {
	t.Helper()
	var changes []Change
	for _, s := range to {
		var err error
		if changes, err = o.TransitionLineItem(itemID, s, "", "tester", tn(2)); err != nil {
			t.Fatalf("TransitionLineItem(%s → %s): %v", itemID, s, err)
		}
	}
	return changes
}

func statuses(o *Order) []Status {
	out := []Status{o.Status}
	for _, li := range o.LineItems {
		out = append(out, li.Status)
	}
	return out
}

func assertEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// assertCode checks err's code and message.
func assertCode(t *testing.T, err error, code, message string) {
	t.Helper()
	if got := ErrorCode(err); got != code {
		t.Fatalf("ErrorCode = %q, want %q (err: %v)", got, code, err)
	}
	if message != "" {
		if got := ErrorMessage(err); got != message {
			t.Errorf("ErrorMessage = %q, want %q", got, message)
		}
	}
}
