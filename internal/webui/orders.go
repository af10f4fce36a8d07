package webui

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// ordersPage is how many orders a search lists per page.
const ordersPage = 25

type ordersData struct {
	Query    string // an order id, as typed
	Customer string
	Error    string
	Orders   []order.Order
	Next     string
	Searched bool
}

// orders searches orders: by id (straight to its timeline) or by customer;
// with neither it lists the newest.
func (h *Handler) orders(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := ordersData{Query: strings.TrimSpace(q.Get("id")), Customer: strings.TrimSpace(q.Get("customer"))}
	if d.Query != "" {
		id, err := uuid.Parse(d.Query)
		if err != nil {
			d.Error = "An order id is a UUID, such as 0190a5c4-7d2e-7c3b-9f10-3c2d4e5f6a7b."
			h.render(w, r, http.StatusBadRequest, "orders", s, d)
			return
		}
		http.Redirect(w, r, Prefix+"orders/"+id.String(), http.StatusSeeOther)
		return
	}
	d.Searched = d.Customer != ""
	page, err := h.cfg.Orders.ListOrders(r.Context(), order.ListFilter{
		CustomerID: d.Customer, Cursor: q.Get("cursor"), Limit: ordersPage,
	})
	if code := order.ErrorCode(err); code == order.EINVALID {
		d.Error = "The search is invalid: " + order.ErrorMessage(err)
		h.render(w, r, http.StatusBadRequest, "orders", s, d)
		return
	} else if err != nil {
		h.internal(w, r, s, "list the orders", err)
		return
	}
	d.Orders = page.Orders
	if page.NextCursor != "" {
		next := url.Values{"cursor": {page.NextCursor}}
		if d.Customer != "" {
			next.Set("customer", d.Customer)
		}
		d.Next = Prefix + "orders?" + next.Encode()
	}
	h.render(w, r, http.StatusOK, "orders", s, d)
}

// Event states on an order's timeline.
const (
	statePending      = "pending"       // in the outbox, due
	stateRetry        = "in retry"      // in the outbox, failed at least once
	stateParked       = "parked"        // in the outbox, behind an open dead letter
	stateDeadLettered = "dead-lettered" // in the dead-letter queue, open
	stateDiscarded    = "discarded"     // dead-lettered, then discarded by an operator
	statePublished    = "published"     // gone from the outbox: the broker acknowledged it
	stateUnknown      = "unknown"       // not dead-lettered; without an EventReader, pending or published
)

// timelineEvent is an event as the timeline shows it.
type timelineEvent struct {
	ID            uuid.UUID
	Type          string
	Sequence      int64 // 0 when unknown (published and gone)
	State         string
	Attempts      int
	LastError     string
	NextAttemptAt time.Time
	DeadLetter    int64 // its latest dead letter's id, 0 if none
	Replayed      bool  // it was dead-lettered and replayed
	CreatedAt     time.Time
}

// timelineRow is one line of the timeline: a transition and its event side
// by side, or an event no transition wrote (order.payment_confirmed).
type timelineRow struct {
	At         time.Time
	Transition *order.Transition
	Item       string // the line item's product, for a line-item transition
	Event      *timelineEvent
}

type orderData struct {
	Order     order.Order
	Rows      []timelineRow
	NoEvents  bool // no EventReader: pending states are unknown
	Truncated bool
}

func (h *Handler) orderTimeline(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		h.fail(w, r, s, http.StatusNotFound, "There is no order "+shorten(r.PathValue("id"), 60)+": an order id is a UUID.")
		return
	}
	o, err := h.cfg.Orders.GetOrder(r.Context(), id)
	if order.ErrorCode(err) == order.ENOTFOUND {
		h.fail(w, r, s, http.StatusNotFound, "There is no order "+id.String()+".")
		return
	}
	if err != nil {
		h.internal(w, r, s, "read the order", err)
		return
	}
	transitions, err := h.cfg.Orders.ListTransitions(r.Context(), id)
	if err != nil {
		h.internal(w, r, s, "read the order's audit trail", err)
		return
	}
	var pending []outbox.PendingEvent
	if h.cfg.Events != nil {
		if pending, err = h.cfg.Events.PendingEvents(r.Context(), h.cfg.AggregateType, id.String(), outbox.MaxPendingEvents); err != nil {
			h.internal(w, r, s, "read the order's events", err)
			return
		}
	}
	dls, err := h.cfg.Outbox.ListDeadLetters(r.Context(), outbox.DeadLetterFilter{
		State: outbox.DeadLetterAll, AggregateType: h.cfg.AggregateType, AggregateID: id.String(), Limit: historyLimit,
	})
	if err != nil && !errors.Is(err, outbox.ErrInvalidFilter) {
		h.internal(w, r, s, "read the order's dead letters", err)
		return
	}
	d := orderData{Order: o, NoEvents: h.cfg.Events == nil,
		Rows:      h.timeline(o, transitions, pending, dls),
		Truncated: len(pending) == outbox.MaxPendingEvents || len(dls) == historyLimit}
	h.renderTitled(w, r, http.StatusOK, "order", "Order "+o.ID.String(), s, d)
}

// timeline puts each transition beside its event, with the event's state:
// pending, in retry or parked while it is in the outbox; dead-lettered or
// discarded while its latest dead letter is open or was discarded;
// published once it is in neither (the relay deletes what it published). A
// replayed dead letter's event is in the outbox again or published.
func (h *Handler) timeline(o order.Order, ts []order.Transition, pending []outbox.PendingEvent, dls []outbox.DeadLetter) []timelineRow {
	events := map[uuid.UUID]*timelineEvent{}
	var known []uuid.UUID    // events in the outbox or the DLQ
	for _, dl := range dls { // by id: the latest dead letter of an event comes last
		e := events[dl.EventID]
		if e == nil {
			e = &timelineEvent{ID: dl.EventID, Type: dl.EventType, Sequence: dl.Sequence, CreatedAt: dl.CreatedAt}
			events[dl.EventID] = e
			known = append(known, dl.EventID)
		}
		e.DeadLetter, e.Attempts, e.LastError = dl.ID, dl.Attempts, dl.Error
		switch dl.State() {
		case outbox.DeadLetterOpen:
			e.State, e.Replayed = stateDeadLettered, false
		case outbox.DeadLetterDiscarded:
			e.State, e.Replayed = stateDiscarded, false
		case outbox.DeadLetterReplayed:
			e.State, e.Replayed = statePublished, true
		}
	}
	for _, p := range pending {
		e := events[p.ID]
		if e == nil {
			e = &timelineEvent{ID: p.ID, Type: p.Type, Sequence: p.Sequence, CreatedAt: p.CreatedAt}
			events[p.ID] = e
			known = append(known, p.ID)
		}
		e.Attempts, e.LastError, e.NextAttemptAt = p.Attempts, p.LastError, p.NextAttemptAt
		switch {
		case p.Parked && !h.cfg.MoveOnPastDeadLetters:
			e.State = stateParked
		case p.Attempts > 0:
			e.State = stateRetry
		default:
			e.State = statePending
		}
	}
	items := map[uuid.UUID]string{}
	for _, li := range o.LineItems {
		items[li.ID] = li.ProductID
	}
	rows := make([]timelineRow, 0, len(ts)+len(known))
	linked := map[uuid.UUID]bool{}
	for i := range ts {
		t := &ts[i]
		row := timelineRow{At: t.CreatedAt, Transition: t}
		if t.LineItemID != nil {
			row.Item = items[*t.LineItemID]
		}
		if t.EventID != uuid.Nil {
			e := events[t.EventID]
			if e == nil { // in neither table: published (if the outbox could be read)
				e = &timelineEvent{ID: t.EventID, Type: eventTypeOf(t), State: statePublished}
				if h.cfg.Events == nil {
					e.State = stateUnknown
				}
			}
			row.Event = e
			linked[t.EventID] = true
		}
		rows = append(rows, row)
	}
	// Events without a transition (order.payment_confirmed) go before the
	// first event of a later sequence. (Published events' sequences are
	// unknown, but they are all earlier than any event still held.)
	for _, id := range known {
		if linked[id] {
			continue
		}
		e := events[id]
		at := len(rows)
		for j, row := range rows {
			if row.Event != nil && row.Event.Sequence > e.Sequence {
				at = j
				break
			}
		}
		rows = slices.Insert(rows, at, timelineRow{At: e.CreatedAt, Event: e})
	}
	return rows
}

// eventTypeOf is the type of the event a transition emitted (the orders
// service's rule), for a published event whose row is gone.
func eventTypeOf(t *order.Transition) string {
	switch {
	case t.LineItemID != nil:
		return order.EventLineItemStatusChanged
	case t.From == "":
		return order.EventOrderCreated
	default:
		return order.EventOrderStatusChanged
	}
}
