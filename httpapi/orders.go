package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/order"
)

// Limits of GET /api/v1/orders.
const (
	MaxOrdersLimit = 100
	maxCursorLen   = 512
)

// handleCreateOrder serves POST /api/v1/orders: 201 with the order, its
// Location and ETag.
func (s *server) handleCreateOrder(w http.ResponseWriter, r *http.Request) {
	opts, err := requestOptions(r, false, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req order.CreateOrder
	if _, err := decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err := s.cfg.Orders.CreateOrder(r.Context(), req, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", orderPath(o))
	s.writeOrder(w, r, http.StatusCreated, o)
}

// handleGetOrder serves GET /api/v1/orders/{id}, with If-None-Match.
func (s *server) handleGetOrder(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err := s.cfg.Orders.GetOrder(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if noneMatch(r, etag(o)) {
		w.Header().Set("ETag", etag(o))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

// ListOrdersResponse is the body of GET /api/v1/orders.
type ListOrdersResponse struct {
	Orders     []order.Order `json:"orders"`
	NextCursor string        `json:"next_cursor,omitempty"` // absent on the last page
}

// handleListOrders serves GET /api/v1/orders?status=&customer_id=&cursor=&limit=.
func (s *server) handleListOrders(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "status", "customer_id", "cursor", "limit")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := order.ListFilter{
		Status:     order.Status(q.str("status", order.MaxIDLen)),
		CustomerID: q.str("customer_id", order.MaxIDLen),
		Cursor:     q.str("cursor", maxCursorLen),
		Limit:      int(q.int("limit", 1, MaxOrdersLimit, 0)),
	}
	if f.Status != "" && !order.OrderMachine().Has(f.Status) {
		q.fail("status", "must be one of %s", joinStatuses(order.OrderMachine().States()))
	}
	if err := q.err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.cfg.Orders.ListOrders(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := ListOrdersResponse{Orders: page.Orders, NextCursor: page.NextCursor}
	if resp.Orders == nil {
		resp.Orders = []order.Order{}
	}
	for i := range resp.Orders {
		resp.Orders[i] = normalizeOrder(resp.Orders[i])
	}
	s.writeJSON(w, r, http.StatusOK, resp)
}

// handleConfirmPayment serves POST /api/v1/orders/{id}/payment-confirmation.
func (s *server) handleConfirmPayment(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := requestOptions(r, true, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req order.ConfirmPayment
	if _, err := decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err := s.cfg.Orders.ConfirmPayment(r.Context(), id, req, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

// handleTransitionOrder serves POST /api/v1/orders/{id}/transitions.
func (s *server) handleTransitionOrder(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, opts, err := transitionRequest(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err := s.cfg.Orders.TransitionOrder(r.Context(), id, req, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

// handleTransitionLineItem serves POST /api/v1/orders/{id}/line-items/{item}/transitions.
func (s *server) handleTransitionLineItem(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	itemID, err := pathUUID(r, "item", "line item")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, opts, err := transitionRequest(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err := s.cfg.Orders.TransitionLineItem(r.Context(), id, itemID, req, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeOrder(w, r, http.StatusOK, o)
}

func transitionRequest(w http.ResponseWriter, r *http.Request) (order.TransitionRequest, order.RequestOptions, error) {
	var req order.TransitionRequest
	opts, err := requestOptions(r, true, false)
	if err != nil {
		return req, opts, err
	}
	if _, err := decodeBody(w, r, &req, true); err != nil {
		return req, opts, err
	}
	return req, opts, req.Validate()
}

// ListTransitionsResponse is the body of GET /api/v1/orders/{id}/transitions.
type ListTransitionsResponse struct {
	Transitions []order.Transition `json:"transitions"`
}

// handleListTransitions serves GET /api/v1/orders/{id}/transitions: the
// audit trail, oldest first.
func (s *server) handleListTransitions(w http.ResponseWriter, r *http.Request) {
	id, err := orderID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ts, err := s.cfg.Orders.ListTransitions(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ts == nil {
		ts = []order.Transition{}
	}
	s.writeJSON(w, r, http.StatusOK, ListTransitionsResponse{Transitions: ts})
}

// writeOrder writes o with its version as the ETag.
func (s *server) writeOrder(w http.ResponseWriter, r *http.Request, status int, o order.Order) {
	w.Header().Set("ETag", etag(o))
	s.writeJSON(w, r, status, normalizeOrder(o))
}

// normalizeOrder makes an order without line items encode them as [].
func normalizeOrder(o order.Order) order.Order {
	if o.LineItems == nil {
		o.LineItems = []order.LineItem{}
	}
	return o
}

// writeJSON writes v as the JSON response. Encoding is done before the
// status is sent, so a value that cannot be encoded is still a clean 500.
func (s *server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func orderPath(o order.Order) string { return "/api/v1/orders/" + o.ID.String() }

// etag is the order's version as a strong entity tag: "3".
func etag(o order.Order) string { return `"` + strconv.FormatInt(o.Version, 10) + `"` }

// noneMatch reports whether If-None-Match lists tag (or is "*").
func noneMatch(r *http.Request, tag string) bool {
	for _, v := range r.Header.Values("If-None-Match") {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/") // weak comparison (RFC 9110 §13.1.2)
			if t == "*" || t == tag {
				return true
			}
		}
	}
	return false
}

func joinStatuses(ss []order.Status) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}
