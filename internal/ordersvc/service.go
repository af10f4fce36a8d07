// Package ordersvc implements order.Service once, for every database: it
// opens the transaction, locks the order, applies the request with the
// domain (package order), and writes the order, one audit row per status
// change and the change's event to the outbox in that transaction, so they
// commit together or not at all.
// The databases sit behind the small Store and Tx interfaces, implemented by
// the pgorders and sqliteorders packages.
//
//	driver, err := pgstore.New(pool, pgstore.Config{Name: ordersvc.OutboxName})
//	store := pgorders.New(pool, outbox.NewClient[pgx.Tx](driver))
//	svc := ordersvc.New(store, ordersvc.Config{})
//	o, err := svc.CreateOrder(ctx, req, order.RequestOptions{Actor: "api"})
package ordersvc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// ReasonCreated is the reason on the audit row that records an order's
// creation (from no status to pending), linked to its order.created event.
const ReasonCreated = "order created"

// Limits of ListOrders.
const (
	DefaultListLimit = 20
	MaxListLimit     = 100
)

// Config tunes a Service. The zero value is usable.
type Config struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// NewID makes order, line item and event ids; default uuid.NewV7.
	NewID order.IDFunc
	// EventHeaders returns the headers to store with the events of a
	// request: the W3C trace context ("traceparent", "tracestate"), which
	// the relay passes on as CloudEvents extensions. It may return nil.
	// Default TraceHeaders, which reads the active OpenTelemetry span of
	// ctx, or else what ContextWithTraceContext put in ctx.
	EventHeaders func(ctx context.Context) map[string]string
	// Tracer, when set, records a span around each write's database
	// transaction (the one that writes the order and its events). Nil
	// means no tracing.
	Tracer trace.Tracer
}

// Service is the orders service. It is safe for concurrent use.
type Service struct {
	store   Store
	now     func() time.Time
	newID   order.IDFunc
	headers func(ctx context.Context) map[string]string
	tracer  trace.Tracer
}

var _ order.Service = (*Service)(nil)

// New returns a Service on store.
func New(store Store, cfg Config) *Service {
	s := &Service{store: store, now: cfg.Now, newID: cfg.NewID, headers: cfg.EventHeaders, tracer: cfg.Tracer}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = uuid.NewV7
	}
	if s.headers == nil {
		s.headers = TraceHeaders
	}
	return s
}

// CreateOrder validates req and writes the new pending order, the audit row
// of its creation and its order.created event (sequence 1) in one
// transaction.
//
// With opts.IdempotencyKey, a repeat of the request returns the order the
// first one created, and writes nothing; the key with another request (or
// another actor) is ECONFLICT. A request that failed stored nothing, so it
// can be retried with its key.
//
// Returns EINVALID (nothing written) or ECONFLICT.
func (s *Service) CreateOrder(ctx context.Context, req order.CreateOrder, opts order.RequestOptions) (order.Order, error) {
	if err := checkOptions(opts); err != nil {
		return order.Order{}, err
	}
	o, err := order.NewOrder(req, s.newID, s.now())
	if err != nil {
		return order.Order{}, err
	}
	key, err := s.idempotencyKey(opts, OpCreateOrder, o.ID, uuid.Nil, req)
	if err != nil {
		return order.Order{}, err
	}
	events, ids, err := s.outboxEvents(ctx, []order.Event{order.CreatedEvent(&o)})
	if err != nil {
		return order.Order{}, err
	}
	audit := []order.Transition{{
		OrderID:   o.ID,
		To:        order.StatusPending,
		Reason:    ReasonCreated,
		Actor:     opts.Actor,
		EventID:   ids[0],
		CreatedAt: o.CreatedAt,
	}}

	var result order.Order
	err = s.withTx(ctx, OpCreateOrder, func(ctx context.Context, tx Tx) error {
		if key != nil {
			replayed, ok, err := s.claim(ctx, tx, key)
			if err != nil || ok {
				result = replayed
				return err
			}
		}
		if err := tx.InsertOrder(ctx, &o, numberEvents(events, 0), audit); err != nil {
			return fmt.Errorf("ordersvc: insert order: %w", err)
		}
		if err := enqueue(ctx, tx, events); err != nil {
			return err
		}
		if err := s.saveResponse(ctx, tx, key, &o); err != nil {
			return err
		}
		result = o
		return nil
	})
	if err != nil {
		return order.Order{}, s.convert(err, o.ID)
	}
	return result, nil
}

// GetOrder returns the order with its line items. Returns ENOTFOUND.
func (s *Service) GetOrder(ctx context.Context, id uuid.UUID) (order.Order, error) {
	o, err := s.store.GetOrder(ctx, id)
	if err != nil {
		return order.Order{}, s.convert(err, id)
	}
	return o, nil
}

// ListOrders returns a page of orders matching f, newest first. The cursor
// is a position in that order, so orders created after the first page was
// read do not shift later pages. Returns EINVALID for a bad filter or cursor.
func (s *Service) ListOrders(ctx context.Context, f order.ListFilter) (order.Page, error) {
	q, err := listQuery(f)
	if err != nil {
		return order.Page{}, err
	}
	limit := q.Limit
	q.Limit++ // one more tells whether there is a next page
	orders, err := s.store.ListOrders(ctx, q)
	if err != nil {
		return order.Page{}, fmt.Errorf("ordersvc: list orders: %w", err)
	}
	page := order.Page{Orders: orders}
	if len(orders) > limit {
		page.Orders = orders[:limit]
		last := &orders[limit-1]
		page.NextCursor = EncodeCursor(Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	if page.Orders == nil {
		page.Orders = []order.Order{}
	}
	return page, nil
}

// ConfirmPayment moves the order and its pending line items to
// payment_confirmed, writing order.payment_confirmed, order.status_changed
// and one line_item.status_changed per line item, with their audit rows, in
// one transaction. Idempotency keys work as for CreateOrder; the order id is
// part of the request.
//
// Returns EINVALID (the amount or currency differ from the order's),
// ENOTFOUND, ECONFLICT (the order is not pending, or key reuse) or
// EPRECONDITION.
func (s *Service) ConfirmPayment(ctx context.Context, id uuid.UUID, req order.ConfirmPayment, opts order.RequestOptions) (order.Order, error) {
	if err := checkOptions(opts); err != nil {
		return order.Order{}, err
	}
	if err := req.Validate(); err != nil {
		return order.Order{}, err
	}
	key, err := s.idempotencyKey(opts, OpConfirmPayment, id, id, req)
	if err != nil {
		return order.Order{}, err
	}
	return s.change(ctx, OpConfirmPayment, id, opts, key, func(o *order.Order, now time.Time) ([]order.Change, error) {
		return o.ConfirmPayment(req, opts.Actor, now)
	})
}

// TransitionOrder makes an order-level transition request (cancellation),
// which also cancels the open line items. opts.IdempotencyKey is ignored.
//
// Returns EINVALID, ENOTFOUND, ECONFLICT naming the allowed targets, or
// EPRECONDITION.
func (s *Service) TransitionOrder(ctx context.Context, id uuid.UUID, req order.TransitionRequest, opts order.RequestOptions) (order.Order, error) {
	if err := checkTransition(req, opts); err != nil {
		return order.Order{}, err
	}
	return s.change(ctx, "transition_order", id, opts, nil, func(o *order.Order, now time.Time) ([]order.Change, error) {
		return o.Transition(req.To, req.Reason, opts.Actor, now)
	})
}

// TransitionLineItem makes a line-item transition request and the automatic
// order transitions it calls for. opts.IdempotencyKey is ignored.
//
// Returns EINVALID, ENOTFOUND (order or line item), ECONFLICT naming the
// allowed targets, or EPRECONDITION.
func (s *Service) TransitionLineItem(ctx context.Context, id, itemID uuid.UUID, req order.TransitionRequest, opts order.RequestOptions) (order.Order, error) {
	if err := checkTransition(req, opts); err != nil {
		return order.Order{}, err
	}
	return s.change(ctx, "transition_line_item", id, opts, nil, func(o *order.Order, now time.Time) ([]order.Change, error) {
		return o.TransitionLineItem(itemID, req.To, req.Reason, opts.Actor, now)
	})
}

// ListTransitions returns the order's audit trail, oldest first: its
// creation (from "" to pending), then every status change. Returns ENOTFOUND.
func (s *Service) ListTransitions(ctx context.Context, id uuid.UUID) ([]order.Transition, error) {
	ts, err := s.store.ListTransitions(ctx, id)
	if err != nil {
		return nil, s.convert(err, id)
	}
	if ts == nil {
		ts = []order.Transition{}
	}
	return ts, nil
}

// change runs one change request on order id: in one transaction it claims
// the idempotency key (if any), locks and loads the order, checks If-Match,
// applies the request and writes the result.
func (s *Service) change(ctx context.Context, op string, id uuid.UUID, opts order.RequestOptions, key *IdempotencyKey,
	apply func(o *order.Order, now time.Time) ([]order.Change, error),
) (order.Order, error) {
	var result order.Order
	reqCtx := ctx // the events carry the request's trace context, not the transaction's span
	err := s.withTx(ctx, op, func(ctx context.Context, tx Tx) error {
		if key != nil {
			replayed, ok, err := s.claim(ctx, tx, key)
			if err != nil || ok {
				result = replayed
				return err
			}
		}
		o, lastEvent, err := tx.LockOrder(ctx, id)
		if err != nil {
			return err
		}
		if opts.IfMatch != nil {
			if err := o.CheckVersion(*opts.IfMatch); err != nil {
				return err
			}
		}
		prev := o.Version
		// The clock is read under the lock, so one order's changes are
		// timestamped in commit order.
		changes, err := apply(&o, s.now())
		if err != nil {
			return err
		}
		if o.Version != prev+1 {
			return fmt.Errorf("ordersvc: order %s went from version %d to %d", id, prev, o.Version)
		}
		domainEvents := order.Events(&o, changes)
		events, ids, err := s.outboxEvents(reqCtx, domainEvents)
		if err != nil {
			return err
		}
		audit, err := transitions(changes, domainEvents, ids)
		if err != nil {
			return err
		}
		lastEvent = numberEvents(events, lastEvent)
		if err := tx.UpdateOrder(ctx, &o, changedItems(&o, changes), lastEvent, audit); err != nil {
			if errors.Is(err, ErrVersionConflict) {
				return err
			}
			return fmt.Errorf("ordersvc: update order: %w", err)
		}
		if err := enqueue(ctx, tx, events); err != nil {
			return err
		}
		if err := s.saveResponse(ctx, tx, key, &o); err != nil {
			return err
		}
		result = o
		return nil
	})
	if err != nil {
		return order.Order{}, s.convert(err, id)
	}
	return result, nil
}

// enqueue writes the events to the outbox.
func enqueue(ctx context.Context, tx Tx, events []outbox.Event) error {
	if _, err := tx.Enqueue(ctx, events); err != nil {
		return fmt.Errorf("ordersvc: enqueue events: %w", err)
	}
	return nil
}

// numberEvents gives events the sequences that follow last, the order's
// last event, and returns the new last one. The order keeps its own count
// under the row lock its transaction holds, so the outbox need not keep one
// in a counter row of its own: that is one row write less per change.
func numberEvents(events []outbox.Event, last int64) int64 {
	for i := range events {
		last++
		events[i].Sequence = last
	}
	return last
}

// outboxEvents turns domain events into outbox events with ids made up
// front, so that the audit rows can name them.
// withTx runs fn in a transaction of the store, inside a span named
// "ordersvc.<op> transaction" when the service traces.
func (s *Service) withTx(ctx context.Context, op string, fn func(ctx context.Context, tx Tx) error) error {
	if s.tracer == nil {
		return s.store.WithTx(ctx, func(tx Tx) error { return fn(ctx, tx) })
	}
	ctx, span := s.tracer.Start(ctx, "ordersvc."+op+" transaction",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("herald.operation", op)))
	defer span.End()
	err := s.store.WithTx(ctx, func(tx Tx) error { return fn(ctx, tx) })
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "transaction rolled back")
	}
	return err
}

func (s *Service) outboxEvents(ctx context.Context, events []order.Event) ([]outbox.Event, []uuid.UUID, error) {
	headers := s.headers(ctx)
	out := make([]outbox.Event, len(events))
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		id, err := s.newID()
		if err != nil {
			return nil, nil, fmt.Errorf("ordersvc: event id: %w", err)
		}
		payload, err := e.Payload()
		if err != nil {
			return nil, nil, fmt.Errorf("ordersvc: %s payload: %w", e.Type, err)
		}
		ids[i] = id
		out[i] = outbox.Event{
			ID:            id,
			AggregateType: order.AggregateType,
			AggregateID:   e.OrderID.String(),
			Type:          e.Type,
			Payload:       payload,
			Headers:       headers,
		}
	}
	return out, ids, nil
}

// transitions builds one audit row per change, linked to the id of the
// event that records it.
func transitions(changes []order.Change, events []order.Event, ids []uuid.UUID) ([]order.Transition, error) {
	eventOf := make([]uuid.UUID, len(changes))
	for i, e := range events {
		if e.Change >= 0 {
			eventOf[e.Change] = ids[i]
		}
	}
	out := make([]order.Transition, len(changes))
	for i, c := range changes {
		if eventOf[i] == uuid.Nil {
			return nil, fmt.Errorf("ordersvc: change %d (%s → %s) has no event", i, c.From, c.To)
		}
		t := order.Transition{
			OrderID:   c.OrderID,
			From:      c.From,
			To:        c.To,
			Reason:    c.Reason,
			Actor:     c.Actor,
			Automatic: c.Automatic,
			EventID:   eventOf[i],
			CreatedAt: c.At,
		}
		if !c.OrderLevel() {
			item := c.LineItemID
			t.LineItemID = &item
		}
		out[i] = t
	}
	return out, nil
}

// changedItems returns the line items the changes moved, as they are now,
// in the order's line-item order.
func changedItems(o *order.Order, changes []order.Change) []order.LineItem {
	moved := make(map[uuid.UUID]bool, len(changes))
	for _, c := range changes {
		if !c.OrderLevel() {
			moved[c.LineItemID] = true
		}
	}
	var out []order.LineItem
	for _, li := range o.LineItems {
		if moved[li.ID] {
			out = append(out, li)
		}
	}
	return out
}

// idempotencyKey returns the key record of a request, or nil without a key.
func (s *Service) idempotencyKey(opts order.RequestOptions, op string, orderID, target uuid.UUID, body any) (*IdempotencyKey, error) {
	if opts.IdempotencyKey == "" {
		return nil, nil
	}
	h, err := RequestHash(op, opts.Actor, target, body)
	if err != nil {
		return nil, err
	}
	return &IdempotencyKey{
		Key:         opts.IdempotencyKey,
		Operation:   op,
		RequestHash: h,
		OrderID:     orderID,
		CreatedAt:   normalize(s.now()),
	}, nil
}

// RequestHash is the SHA-256 of the canonical encoding of a request: the
// operation, the actor, the target order id (uuid.Nil for a creation) and
// the body as JSON (Go's encoding of a struct is canonical: fixed field
// order, no insignificant white space).
func RequestHash(op, actor string, target uuid.UUID, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("ordersvc: encode request: %w", err)
	}
	h := sha256.New()
	// The actor has no control characters, so NUL separates unambiguously.
	h.Write([]byte(op))
	h.Write([]byte{0})
	h.Write([]byte(actor))
	h.Write([]byte{0})
	h.Write(target[:])
	h.Write(b)
	return h.Sum(nil), nil
}

// claim claims the idempotency key in tx. When the key is taken it returns
// the stored response and true, or ECONFLICT if the stored request differs.
func (s *Service) claim(ctx context.Context, tx Tx, k *IdempotencyKey) (order.Order, bool, error) {
	stored, claimed, err := tx.ClaimIdempotencyKey(ctx, *k)
	if err != nil {
		return order.Order{}, false, fmt.Errorf("ordersvc: claim idempotency key: %w", err)
	}
	if claimed {
		return order.Order{}, false, nil
	}
	if stored.Operation != k.Operation || !bytes.Equal(stored.RequestHash, k.RequestHash) {
		return order.Order{}, true, order.Errorf(order.ECONFLICT,
			"The Idempotency-Key was already used for a different request.")
	}
	if len(stored.Response) == 0 {
		return order.Order{}, true, fmt.Errorf("ordersvc: idempotency key %q has no stored response", k.Key)
	}
	var o order.Order
	if err := json.Unmarshal(stored.Response, &o); err != nil {
		return order.Order{}, true, fmt.Errorf("ordersvc: decode stored response of idempotency key %q: %w", k.Key, err)
	}
	return o, true, nil
}

// saveResponse stores o as the response of the request that claimed key.
func (s *Service) saveResponse(ctx context.Context, tx Tx, key *IdempotencyKey, o *order.Order) error {
	if key == nil {
		return nil
	}
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("ordersvc: encode response: %w", err)
	}
	if err := tx.SetIdempotencyResponse(ctx, key.Key, b); err != nil {
		return fmt.Errorf("ordersvc: save idempotency response: %w", err)
	}
	return nil
}

// convert turns store errors into application errors; *order.Error values
// and internal errors pass through.
func (s *Service) convert(err error, id uuid.UUID) error {
	var e *order.Error
	switch {
	case errors.As(err, &e):
		return err
	case errors.Is(err, ErrNotFound):
		return order.Errorf(order.ENOTFOUND, "Order %s not found.", id)
	case errors.Is(err, ErrVersionConflict):
		return order.Errorf(order.ECONFLICT, "Order %s was changed concurrently; retry the request.", id)
	}
	return err
}

// normalize returns t as the databases store it: UTC, microseconds.
func normalize(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}
