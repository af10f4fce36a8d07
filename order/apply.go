package order

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Reasons recorded on the order transitions the machine makes on its own.
const (
	ReasonAllLineItemsDone = "every line item reached a terminal status"
	ReasonAllLineItemsVoid = "every line item was cancelled or refunded"
)

// Change is one status transition made by a request, of the order or of one
// of its line items. The service writes one audit row and one event per
// Change, in order, in the request's transaction.
type Change struct {
	OrderID uuid.UUID
	// LineItemID is uuid.Nil for an order-level change.
	LineItemID uuid.UUID
	From, To   Status
	Reason     string
	// Actor is who made the request that caused the change, also for an
	// automatic change.
	Actor string
	// Automatic is true when the machine made the change on its own by one
	// of its rules, not because the request named it.
	Automatic bool
	At        time.Time
	// Payment is the confirmation that moved the order pending →
	// payment_confirmed; nil on every other change.
	Payment *ConfirmPayment
}

// OrderLevel reports whether c changed the order rather than a line item.
func (c *Change) OrderLevel() bool { return c.LineItemID == uuid.Nil }

// ConfirmPayment applies a payment confirmation: the order and every pending
// line item move pending → payment_confirmed, which nothing else can do. On
// success o is the new order, one version up, and the changes are the
// order's followed by one per line item. On error o is unchanged.
//
// Returns EINVALID if p is invalid or its amount or currency differ from the
// order's total and currency (field errors "amount", "currency"), and
// ECONFLICT if the order is not pending.
func (o *Order) ConfirmPayment(p ConfirmPayment, actor string, now time.Time) ([]Change, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	if o.Status != StatusPending {
		return nil, &Error{
			Code:    ECONFLICT,
			Message: fmt.Sprintf("Order is %s; a payment can be confirmed only while it is pending.", o.Status),
			Allowed: nonNil(OrderTargets(o.Status)),
		}
	}
	var fe fieldErrors
	if p.Amount != o.TotalAmount {
		fe.add("amount", "must equal the order total %d", o.TotalAmount)
	}
	if p.Currency != o.Currency {
		fe.add("currency", "must equal the order currency %s", o.Currency)
	}
	if err := fe.err("The payment does not match the order."); err != nil {
		return nil, err
	}

	a := newApplier(o, actor, now)
	reason := "payment " + p.PaymentID + " confirmed"
	payment := p
	a.moveOrder(StatusPaymentConfirmed, reason, false, &payment)
	for i, li := range a.next.LineItems {
		if li.Status != StatusPending {
			continue // cancelled before payment
		}
		if err := a.moveItem(i, StatusPaymentConfirmed, ByPayment, reason); err != nil {
			return nil, err
		}
	}
	return a.commit(o)
}

// Transition applies an order-level transition request. Only cancellation
// can be requested (from pending or payment_confirmed); it also cancels
// every open line item, one Change each after the order's. On error o is
// unchanged.
//
// Returns EINVALID for an unknown status or a bad reason or actor, and
// ECONFLICT naming the allowed targets when the machine does not let a
// request make the transition.
func (o *Order) Transition(to Status, reason, actor string, now time.Time) ([]Change, error) {
	if err := checkTransition(to, reason, actor); err != nil {
		return nil, err
	}
	if !orderMachine.Allows(o.Status, to, ByRequest) {
		return nil, refused("Order", orderMachine, o.Status, to)
	}
	a := newApplier(o, actor, now)
	a.moveOrder(to, reason, false, nil)
	if to == StatusCancelled {
		for i, li := range a.next.LineItems {
			m := LineItemMachine(li.ProductType)
			if m != nil && m.Terminal(li.Status) {
				continue
			}
			if err := a.moveItem(i, StatusCancelled, ByRequest, reason); err != nil {
				return nil, err
			}
		}
	}
	return a.commit(o)
}

// TransitionLineItem applies a line-item transition request, then the
// automatic order transitions it calls for (Changes after the line item's).
// On error o is unchanged.
//
// Returns EINVALID for an unknown status or a bad reason or actor, ENOTFOUND
// if the order has no such line item, and ECONFLICT naming the allowed
// targets when the line item's machine does not let a request make the
// transition (payment_confirmed in particular: only a payment confirmation
// gets there).
func (o *Order) TransitionLineItem(itemID uuid.UUID, to Status, reason, actor string, now time.Time) ([]Change, error) {
	if err := checkTransition(to, reason, actor); err != nil {
		return nil, err
	}
	i := -1
	for j := range o.LineItems {
		if o.LineItems[j].ID == itemID {
			i = j
			break
		}
	}
	if i < 0 {
		return nil, Errorf(ENOTFOUND, "Order %s has no line item %s.", o.ID, itemID)
	}
	li := o.LineItems[i]
	m := LineItemMachine(li.ProductType)
	if m == nil {
		return nil, fmt.Errorf("order: line item %s has unknown product type %q", li.ID, li.ProductType)
	}
	if !m.Allows(li.Status, to, ByRequest) {
		return nil, refused("Line item ("+string(li.ProductType)+")", m, li.Status, to)
	}
	a := newApplier(o, actor, now)
	if err := a.moveItem(i, to, ByRequest, reason); err != nil {
		return nil, err
	}
	return a.commit(o)
}

func checkTransition(to Status, reason, actor string) error {
	var fe fieldErrors
	checkStatus(&fe, "to", to)
	checkReason(&fe, "reason", reason)
	checkID(&fe, "actor", actor)
	return fe.err("The transition request is invalid.")
}

// refused builds the ECONFLICT of a transition a request may not make.
func refused(what string, m *Machine, from, to Status) error {
	allowed := nonNil(m.Targets(from, ByRequest))
	var why string
	switch t := m.Trigger(from, to); {
	case t&ByPayment != 0:
		why = "it happens only through the order's payment confirmation"
	case t&Automatically != 0:
		why = "it happens only automatically, as the line items progress"
	case !m.Has(to):
		why = fmt.Sprintf("%s is not a status of the %s machine", to, m.Name())
	case m.Terminal(from):
		why = fmt.Sprintf("%s is terminal", from)
	default:
		why = "the state machine has no such transition"
	}
	return &Error{
		Code:    ECONFLICT,
		Message: fmt.Sprintf("%s cannot move from %s to %s by request: %s.", what, from, to, why),
		Allowed: allowed,
	}
}

// nonNil turns nil into an empty slice, so that "allowed" encodes as [].
func nonNil(s []Status) []Status {
	if s == nil {
		return []Status{}
	}
	return s
}

// applier applies one request to a copy of an order and records its changes.
type applier struct {
	next    Order
	unpaid  bool // the order was pending when the request began
	actor   string
	at      time.Time
	changes []Change
}

func newApplier(o *Order, actor string, now time.Time) *applier {
	return &applier{
		next:   o.clone(),
		unpaid: o.Status == StatusPending,
		actor:  actor,
		at:     normalizeTime(now),
	}
}

func (a *applier) moveOrder(to Status, reason string, automatic bool, payment *ConfirmPayment) {
	a.changes = append(a.changes, Change{
		OrderID:   a.next.ID,
		From:      a.next.Status,
		To:        to,
		Reason:    reason,
		Actor:     a.actor,
		Automatic: automatic,
		At:        a.at,
		Payment:   payment,
	})
	a.next.Status = to
}

// moveItem moves line item i, which its machine must allow by the trigger.
// A line item cancelled before payment drops out of the order total.
func (a *applier) moveItem(i int, to Status, by Trigger, reason string) error {
	li := &a.next.LineItems[i]
	m := LineItemMachine(li.ProductType)
	if m == nil || !m.Allows(li.Status, to, by) {
		// The order's own rules keep its line items consistent with it, so
		// this is stored data the machines cannot have produced.
		return fmt.Errorf("order: line item %s (%s) cannot move from %s to %s by %s", li.ID, li.ProductType, li.Status, to, by)
	}
	a.changes = append(a.changes, Change{
		OrderID:    a.next.ID,
		LineItemID: li.ID,
		From:       li.Status,
		To:         to,
		Reason:     reason,
		Actor:      a.actor,
		At:         a.at,
	})
	li.Status = to
	if to == StatusCancelled && a.unpaid {
		a.next.TotalAmount -= li.Amount()
	}
	return nil
}

// settle makes the automatic order transitions the line items call for,
// until none applies:
//   - payment_confirmed → processing when a line item has moved past
//     payment_confirmed (to anything but cancelled);
//   - → cancelled when every line item is cancelled or refunded;
//   - → completed when every line item is terminal and one is neither.
func (a *applier) settle() error {
	for !orderMachine.Terminal(a.next.Status) {
		to, reason, err := a.rule()
		if err != nil {
			return err
		}
		if to == "" {
			return nil
		}
		if !orderMachine.Allows(a.next.Status, to, Automatically) {
			return fmt.Errorf("order: order %s in %s cannot move to %s automatically", a.next.ID, a.next.Status, to)
		}
		a.moveOrder(to, reason, true, nil)
	}
	return nil
}

// rule returns the automatic transition the order's line items call for, or "".
func (a *applier) rule() (Status, string, error) {
	items := a.next.LineItems
	if a.next.Status == StatusPaymentConfirmed {
		for _, li := range items {
			switch li.Status {
			case StatusPending, StatusPaymentConfirmed, StatusCancelled:
			default:
				return StatusProcessing, fmt.Sprintf("line item %s moved to %s", li.ID, li.Status), nil
			}
		}
	}
	if len(items) == 0 {
		return "", "", nil
	}
	void := true
	for _, li := range items {
		m := LineItemMachine(li.ProductType)
		if m == nil {
			return "", "", fmt.Errorf("order: line item %s has unknown product type %q", li.ID, li.ProductType)
		}
		if !m.Terminal(li.Status) {
			return "", "", nil
		}
		if li.Status != StatusCancelled && li.Status != StatusRefunded {
			void = false
		}
	}
	if void {
		return StatusCancelled, ReasonAllLineItemsVoid, nil
	}
	return StatusCompleted, ReasonAllLineItemsDone, nil
}

// commit settles the order, bumps its version and stores it in o.
func (a *applier) commit(o *Order) ([]Change, error) {
	if err := a.settle(); err != nil {
		return nil, err
	}
	a.next.Version++
	a.next.UpdatedAt = a.at
	*o = a.next
	return a.changes, nil
}
