package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/order"
)

// Request kinds of the full mode, for the per-kind latencies.
const (
	reqCreate     = "create"
	reqPay        = "confirm_payment"
	reqCancel     = "cancel_order"
	reqTransition = "item_transition"
)

var requestKinds = []string{reqCreate, reqPay, reqCancel, reqTransition}

// step is one API request of an order's walk.
type step struct {
	kind string
	item uuid.UUID    // reqTransition
	to   order.Status // reqCancel, reqTransition
}

// plan picks, for a new order, its line items and (WorkloadLifecycle) the
// walk that follows: about 5% are cancelled before payment and 5% after;
// the others have every line item walked to a terminal state, mostly the
// happy one, sometimes a cancellation, a refund or a no-show.
type plan struct {
	rng *rand.Rand
}

func (p plan) createRequest(customer string) order.CreateOrder {
	n := 1 + p.rng.IntN(3)
	types := order.ProductTypes()
	req := order.CreateOrder{CustomerID: customer, Currency: "EUR"}
	for range n {
		pt := types[p.rng.IntN(len(types))]
		req.LineItems = append(req.LineItems, order.CreateLineItem{
			ProductID:   fmt.Sprintf("p-%d", 1+p.rng.IntN(500)),
			ProductType: pt,
			Quantity:    int64(1 + p.rng.IntN(3)),
			UnitPrice:   int64(100 + p.rng.IntN(20000)),
		})
	}
	return req
}

// walk returns the steps after the creation of o.
func (p plan) walk(o *order.Order) []step {
	r := p.rng.Float64()
	if r < 0.05 {
		return []step{{kind: reqCancel, to: order.StatusCancelled}}
	}
	steps := []step{{kind: reqPay}}
	if r < 0.10 {
		return append(steps, step{kind: reqCancel, to: order.StatusCancelled})
	}
	for _, li := range o.LineItems {
		for _, to := range p.itemPath(li.ProductType) {
			steps = append(steps, step{kind: reqTransition, item: li.ID, to: to})
		}
	}
	return steps
}

// itemPath is the statuses a paid line item goes through to its end.
func (p plan) itemPath(pt order.ProductType) []order.Status {
	r := p.rng.Float64()
	switch pt {
	case order.ProductPhysical:
		happy := []order.Status{order.StatusPreparing, order.StatusReadyToShip, order.StatusShipped, order.StatusDelivered}
		if r < 0.10 {
			k := p.rng.IntN(3) // cancelled from payment_confirmed, preparing or ready_to_ship
			return append(slices.Clone(happy[:k]), order.StatusCancelled)
		}
		return happy
	case order.ProductDigital:
		switch {
		case r < 0.05:
			return []order.Status{order.StatusRefundRequested, order.StatusRefunded}
		case r < 0.10:
			return []order.Status{order.StatusAccessGranted, order.StatusRefundRequested, order.StatusRefunded}
		}
		return []order.Status{order.StatusAccessGranted, order.StatusDownloaded}
	default:
		switch {
		case r < 0.05:
			return []order.Status{order.StatusCancelled}
		case r < 0.10:
			return []order.Status{order.StatusBookingConfirmed, order.StatusReminderSent, order.StatusNoShow}
		}
		return []order.Status{order.StatusBookingConfirmed, order.StatusReminderSent, order.StatusInProgress, order.StatusCompleted}
	}
}

// expectedEvents applies the step to a copy of o with the domain's own
// rules and returns how many events the server must have written for it and
// the order as it must be afterwards.
func expectedEvents(o *order.Order, s step) (int64, order.Order, error) {
	next := *o
	next.LineItems = append([]order.LineItem(nil), o.LineItems...)
	now := time.Now()
	var (
		changes []order.Change
		err     error
	)
	switch s.kind {
	case reqPay:
		changes, err = next.ConfirmPayment(order.ConfirmPayment{PaymentID: "pay-bench", Amount: o.TotalAmount, Currency: o.Currency}, "bench", now)
	case reqCancel:
		changes, err = next.Transition(s.to, "bench", "bench", now)
	case reqTransition:
		changes, err = next.TransitionLineItem(s.item, s.to, "", "bench", now)
	default:
		return 0, next, fmt.Errorf("bench: no model for %s", s.kind)
	}
	if err != nil {
		return 0, next, err
	}
	return int64(len(order.Events(&next, changes))), next, nil
}

// sameState reports whether the server's order matches the model's.
func sameState(a, b *order.Order) bool {
	if a.Status != b.Status || a.Version != b.Version || len(a.LineItems) != len(b.LineItems) {
		return false
	}
	for i := range a.LineItems {
		if a.LineItems[i].ID != b.LineItems[i].ID || a.LineItems[i].Status != b.LineItems[i].Status {
			return false
		}
	}
	return true
}

// apiClient calls Herald's order routes.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// apiError is a response with a status other than the one expected.
type apiError struct {
	status int
	body   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.status, strings.TrimSpace(e.body))
}

// committed reports whether the request may have committed: a 4xx changed
// nothing (bad input changes nothing), a 5xx or a transport error may have.
func committed(err error) bool {
	var ae *apiError
	return !errors.As(err, &ae) || ae.status >= 500
}

func (c *apiClient) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		if len(b) > 300 {
			b = b[:300]
		}
		return &apiError{status: resp.StatusCode, body: string(b)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// run sends step s for order o and returns the order the server answered.
func (c *apiClient) run(ctx context.Context, o *order.Order, s step) (order.Order, error) {
	var out order.Order
	base := "/api/v1/orders/" + o.ID.String()
	var err error
	switch s.kind {
	case reqPay:
		err = c.do(ctx, http.MethodPost, base+"/payment-confirmation",
			order.ConfirmPayment{PaymentID: "pay-" + o.ID.String()[:8], Amount: o.TotalAmount, Currency: o.Currency}, http.StatusOK, &out)
	case reqCancel:
		err = c.do(ctx, http.MethodPost, base+"/transitions", order.TransitionRequest{To: s.to, Reason: "bench"}, http.StatusOK, &out)
	case reqTransition:
		err = c.do(ctx, http.MethodPost, base+"/line-items/"+s.item.String()+"/transitions", order.TransitionRequest{To: s.to}, http.StatusOK, &out)
	default:
		err = fmt.Errorf("bench: unknown step %s", s.kind)
	}
	return out, err
}

func (c *apiClient) create(ctx context.Context, req order.CreateOrder) (order.Order, error) {
	var out order.Order
	err := c.do(ctx, http.MethodPost, "/api/v1/orders", req, http.StatusCreated, &out)
	return out, err
}

// auditEvents counts the events an order's audit trail implies: one per
// transition (its creation included) and one order.payment_confirmed for
// the payment confirmation, which has no audit row of its own.
func (c *apiClient) auditEvents(ctx context.Context, id uuid.UUID) (int64, error) {
	var out struct {
		Transitions []order.Transition `json:"transitions"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/orders/"+id.String()+"/transitions", nil, http.StatusOK, &out); err != nil {
		return 0, err
	}
	n := int64(len(out.Transitions))
	for _, t := range out.Transitions {
		if t.LineItemID == nil && t.To == order.StatusPaymentConfirmed {
			n++
		}
	}
	return n, nil
}
