package order

import (
	"slices"
	"testing"

	"github.com/google/uuid"
)

// allStatuses lists every status of every machine, plus one no machine has.
var allStatuses = []Status{
	StatusPending, StatusPaymentConfirmed, StatusProcessing, StatusCompleted, StatusCancelled,
	StatusPreparing, StatusReadyToShip, StatusShipped, StatusDelivered,
	StatusAccessGranted, StatusDownloaded, StatusRefundRequested, StatusRefunded,
	StatusBookingConfirmed, StatusReminderSent, StatusInProgress, StatusNoShow,
	"bogus",
}

type pair struct{ from, to Status }

// Written out from the state machines in docs/STATE_MACHINES.md, independently of the tables in machine.go.
const (
	req  = ByRequest
	pay  = ByPayment
	auto = Automatically
)

var wantTables = map[string]map[pair]Trigger{
	"order": {
		{"pending", "payment_confirmed"}:    pay,
		{"payment_confirmed", "processing"}: auto,
		{"processing", "completed"}:         auto,
		{"pending", "cancelled"}:            req | auto,
		{"payment_confirmed", "cancelled"}:  req | auto,
		{"processing", "cancelled"}:         auto,
	},
	"physical": {
		{"pending", "payment_confirmed"}:   pay,
		{"payment_confirmed", "preparing"}: req,
		{"preparing", "ready_to_ship"}:     req,
		{"ready_to_ship", "shipped"}:       req,
		{"shipped", "delivered"}:           req,
		{"pending", "cancelled"}:           req,
		{"payment_confirmed", "cancelled"}: req,
		{"preparing", "cancelled"}:         req,
		{"ready_to_ship", "cancelled"}:     req,
	},
	"digital": {
		{"pending", "payment_confirmed"}:          pay,
		{"payment_confirmed", "access_granted"}:   req,
		{"access_granted", "downloaded"}:          req,
		{"pending", "cancelled"}:                  req,
		{"payment_confirmed", "cancelled"}:        req,
		{"payment_confirmed", "refund_requested"}: req,
		{"access_granted", "refund_requested"}:    req,
		{"refund_requested", "refunded"}:          req,
	},
	"service": {
		{"pending", "payment_confirmed"}:           pay,
		{"payment_confirmed", "booking_confirmed"}: req,
		{"booking_confirmed", "reminder_sent"}:     req,
		{"reminder_sent", "in_progress"}:           req,
		{"in_progress", "completed"}:               req,
		{"pending", "cancelled"}:                   req,
		{"payment_confirmed", "cancelled"}:         req,
		{"booking_confirmed", "cancelled"}:         req,
		{"reminder_sent", "cancelled"}:             req,
		{"reminder_sent", "no_show"}:               req,
		{"in_progress", "no_show"}:                 req,
	},
}

var wantStates = map[string][]Status{
	"order":    {"pending", "payment_confirmed", "processing", "completed", "cancelled"},
	"physical": {"pending", "payment_confirmed", "preparing", "ready_to_ship", "shipped", "delivered", "cancelled"},
	"digital":  {"pending", "payment_confirmed", "access_granted", "downloaded", "cancelled", "refund_requested", "refunded"},
	"service":  {"pending", "payment_confirmed", "booking_confirmed", "reminder_sent", "in_progress", "completed", "cancelled", "no_show"},
}

var wantTerminal = map[string][]Status{
	"order":    {"completed", "cancelled"},
	"physical": {"delivered", "cancelled"},
	"digital":  {"downloaded", "cancelled", "refunded"},
	"service":  {"completed", "cancelled", "no_show"},
}

// wantTargets returns, from the expected table, the targets of from by any
// trigger in by, sorted.
func wantTargets(machine string, from Status, by Trigger) []Status {
	out := []Status{}
	for p, t := range wantTables[machine] {
		if p.from == from && t&by != 0 {
			out = append(out, p.to)
		}
	}
	slices.Sort(out)
	return out
}

func sorted(s []Status) []Status {
	out := append([]Status{}, s...)
	slices.Sort(out)
	return out
}

// TestMachineTables checks every (from, to) pair over all statuses, allowed
// and refused, of every machine against the expected tables.
func TestMachineTables(t *testing.T) {
	t.Parallel()
	assertEqual(t, "machine names", []string{Machines()[0].Name(), Machines()[1].Name(), Machines()[2].Name(), Machines()[3].Name()},
		[]string{"order", "physical", "digital", "service"})
	for _, m := range Machines() {
		t.Run(m.Name(), func(t *testing.T) {
			t.Parallel()
			want := wantTables[m.Name()]
			allowed := 0
			for _, from := range allStatuses {
				for _, to := range allStatuses {
					got := m.Trigger(from, to)
					if got != want[pair{from, to}] {
						t.Errorf("%s → %s: trigger %q, want %q", from, to, got, want[pair{from, to}])
					}
					for _, by := range []Trigger{req, pay, auto} {
						if m.Allows(from, to, by) != (want[pair{from, to}]&by != 0) {
							t.Errorf("Allows(%s, %s, %s) = %v", from, to, by, m.Allows(from, to, by))
						}
					}
					if got != 0 {
						allowed++
					}
				}
			}
			if allowed != len(want) {
				t.Errorf("allowed pairs = %d, want %d", allowed, len(want))
			}
			assertEqual(t, "states", m.States(), wantStates[m.Name()])
			assertEqual(t, "terminal states", m.TerminalStates(), wantTerminal[m.Name()])
			assertEqual(t, "initial", m.Initial(), StatusPending)
			for _, s := range allStatuses {
				wantTerm := slices.Contains(wantTerminal[m.Name()], s)
				if m.Terminal(s) != wantTerm {
					t.Errorf("Terminal(%s) = %v, want %v", s, m.Terminal(s), wantTerm)
				}
				if m.Has(s) != slices.Contains(wantStates[m.Name()], s) {
					t.Errorf("Has(%s) = %v", s, m.Has(s))
				}
				assertEqual(t, "Targets(request) from "+string(s), sorted(m.Targets(s, ByRequest)), wantTargets(m.Name(), s, req))
				assertEqual(t, "Targets(all) from "+string(s), sorted(m.Targets(s, req|pay|auto)), wantTargets(m.Name(), s, req|pay|auto))
			}
		})
	}
}

func TestTargetsFunctions(t *testing.T) {
	t.Parallel()
	for _, from := range allStatuses {
		assertEqual(t, "OrderTargets("+string(from)+")", sorted(OrderTargets(from)), wantTargets("order", from, req))
		for _, pt := range ProductTypes() {
			assertEqual(t, "LineItemTargets("+string(pt)+", "+string(from)+")",
				sorted(LineItemTargets(pt, from)), wantTargets(string(pt), from, req))
		}
	}
	assertEqual(t, "LineItemTargets of unknown type", LineItemTargets("food", StatusPending), []Status(nil))
	if LineItemMachine("food") != nil {
		t.Error("LineItemMachine(food) is not nil")
	}
	assertEqual(t, "physical targets from payment_confirmed, table order",
		LineItemTargets(ProductPhysical, StatusPaymentConfirmed), []Status{StatusPreparing, StatusCancelled})
}

func TestStatusKnownAndTriggerString(t *testing.T) {
	t.Parallel()
	for _, s := range allStatuses[:len(allStatuses)-1] {
		if !s.Known() {
			t.Errorf("%s.Known() = false", s)
		}
	}
	for _, s := range []Status{"bogus", "", "Pending", "PENDING"} {
		if s.Known() {
			t.Errorf("%q.Known() = true", s)
		}
	}
	for tr, want := range map[Trigger]string{
		0:                            "none",
		ByRequest:                    "request",
		ByPayment:                    "payment confirmation",
		Automatically:                "automatic",
		ByRequest | Automatically:    "request, automatic",
		ByRequest | ByPayment | auto: "request, payment confirmation, automatic",
	} {
		assertEqual(t, "Trigger.String", tr.String(), want)
	}
}

// orderIn builds an order in status s whose line items are consistent with
// it: a physical item and a digital one.
func orderIn(s Status) Order {
	items := map[Status][2]Status{
		StatusPending:          {StatusPending, StatusPending},
		StatusPaymentConfirmed: {StatusPaymentConfirmed, StatusPaymentConfirmed},
		StatusProcessing:       {StatusPreparing, StatusPaymentConfirmed},
		StatusCompleted:        {StatusDelivered, StatusDownloaded},
		StatusCancelled:        {StatusCancelled, StatusRefunded},
	}[s]
	return Order{
		ID: id(1), CustomerID: "c-42", Currency: "EUR", Status: s, TotalAmount: 3000, Version: 5,
		CreatedAt: t0, UpdatedAt: t0,
		LineItems: []LineItem{
			{ID: id(2), ProductID: "p-1", ProductType: ProductPhysical, Quantity: 1, UnitPrice: 1000, Status: items[0]},
			{ID: id(3), ProductID: "p-2", ProductType: ProductDigital, Quantity: 2, UnitPrice: 1000, Status: items[1]},
		},
	}
}

// TestOrderTransitionRequests requests every (from, to) pair of the order
// and checks each is applied or refused as the expected table says.
func TestOrderTransitionRequests(t *testing.T) {
	t.Parallel()
	for _, from := range wantStates["order"] {
		for _, to := range allStatuses {
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				t.Parallel()
				o := orderIn(from)
				before := o.clone()
				changes, err := o.Transition(to, "why not", "tester", tn(1))
				switch {
				case to == "bogus":
					assertCode(t, err, EINVALID, "The transition request is invalid.")
					assertEqual(t, "fields", ErrorFields(err), []FieldError{{"to", "is not a known status"}})
					assertEqual(t, "order", o, before)
				case wantTables["order"][pair{from, to}]&req != 0:
					if err != nil {
						t.Fatalf("Transition: %v", err)
					}
					assertEqual(t, "status", o.Status, to)
					assertEqual(t, "version", o.Version, int64(6))
					assertEqual(t, "first change", changes[0], Change{OrderID: id(1), From: from, To: to, Reason: "why not", Actor: "tester", At: tn(1)})
				default:
					assertCode(t, err, ECONFLICT, "")
					assertEqual(t, "allowed", sorted(ErrorAllowed(err)), wantTargets("order", from, req))
					assertEqual(t, "order", o, before)
					if changes != nil {
						t.Errorf("changes = %v, want nil", changes)
					}
				}
			})
		}
	}
}

// TestLineItemTransitionRequests requests every (from, to) pair of every
// product type and checks each is applied or refused as the expected table
// says.
func TestLineItemTransitionRequests(t *testing.T) {
	t.Parallel()
	for _, pt := range ProductTypes() {
		for _, from := range wantStates[string(pt)] {
			for _, to := range allStatuses {
				t.Run(string(pt)+"/"+string(from)+"→"+string(to), func(t *testing.T) {
					t.Parallel()
					// The item under test and a physical one that keeps the
					// order open, in a status consistent with the order's.
					orderStatus, other := StatusProcessing, StatusPreparing
					switch from {
					case StatusPending:
						orderStatus, other = StatusPending, StatusPending
					case StatusPaymentConfirmed:
						orderStatus, other = StatusPaymentConfirmed, StatusPaymentConfirmed
					}
					o := Order{
						ID: id(1), CustomerID: "c-42", Currency: "EUR", Status: orderStatus, TotalAmount: 700, Version: 3,
						LineItems: []LineItem{
							{ID: id(2), ProductID: "p-1", ProductType: pt, Quantity: 1, UnitPrice: 500, Status: from},
							{ID: id(3), ProductID: "p-2", ProductType: ProductPhysical, Quantity: 1, UnitPrice: 200, Status: other},
						},
					}
					before := o.clone()
					changes, err := o.TransitionLineItem(id(2), to, "r", "tester", tn(1))
					switch {
					case to == "bogus":
						assertCode(t, err, EINVALID, "")
						assertEqual(t, "fields", ErrorFields(err), []FieldError{{"to", "is not a known status"}})
						assertEqual(t, "order", o, before)
					case wantTables[string(pt)][pair{from, to}]&req != 0:
						if err != nil {
							t.Fatalf("TransitionLineItem: %v", err)
						}
						assertEqual(t, "item status", o.LineItems[0].Status, to)
						assertEqual(t, "other item status", o.LineItems[1].Status, other)
						assertEqual(t, "version", o.Version, int64(4))
						assertEqual(t, "updated at", o.UpdatedAt, tn(1))
						assertEqual(t, "first change", changes[0], Change{OrderID: id(1), LineItemID: id(2), From: from, To: to, Reason: "r", Actor: "tester", At: tn(1)})
					default:
						assertCode(t, err, ECONFLICT, "")
						assertEqual(t, "allowed", sorted(ErrorAllowed(err)), wantTargets(string(pt), from, req))
						assertEqual(t, "order", o, before)
					}
				})
			}
		}
	}
}

func TestLineItemToPaymentConfirmedIsRefused(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 1, 100))
	_, err := o.TransitionLineItem(id(2), StatusPaymentConfirmed, "", "tester", tn(1))
	assertCode(t, err, ECONFLICT, "Line item (physical) cannot move from pending to payment_confirmed by request: it happens only through the order's payment confirmation.")
	assertEqual(t, "allowed", ErrorAllowed(err), []Status{StatusCancelled})
	assertEqual(t, "status", o.LineItems[0].Status, StatusPending)
	assertEqual(t, "version", o.Version, int64(1))
}

func TestRefusedMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		order   Status
		to      Status
		item    bool
		message string
		allowed []Status
	}{
		{"order payment by request", StatusPending, StatusPaymentConfirmed, false,
			"Order cannot move from pending to payment_confirmed by request: it happens only through the order's payment confirmation.", []Status{StatusCancelled}},
		{"order processing by request", StatusPaymentConfirmed, StatusProcessing, false,
			"Order cannot move from payment_confirmed to processing by request: it happens only automatically, as the line items progress.", []Status{StatusCancelled}},
		{"order cancel from processing", StatusProcessing, StatusCancelled, false,
			"Order cannot move from processing to cancelled by request: it happens only automatically, as the line items progress.", []Status{}},
		{"order to a line-item status", StatusPending, StatusShipped, false,
			"Order cannot move from pending to shipped by request: shipped is not a status of the order machine.", []Status{StatusCancelled}},
		{"order from terminal", StatusCompleted, StatusPending, false,
			"Order cannot move from completed to pending by request: completed is terminal.", []Status{}},
		{"order backwards", StatusPaymentConfirmed, StatusPending, false,
			"Order cannot move from payment_confirmed to pending by request: the state machine has no such transition.", []Status{StatusCancelled}},
		{"item skipping a step", StatusProcessing, StatusShipped, true,
			"Line item (physical) cannot move from preparing to shipped by request: the state machine has no such transition.", []Status{StatusReadyToShip, StatusCancelled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := orderIn(tt.order)
			var err error
			if tt.item {
				_, err = o.TransitionLineItem(id(2), tt.to, "", "tester", tn(1))
			} else {
				_, err = o.Transition(tt.to, "", "tester", tn(1))
			}
			assertCode(t, err, ECONFLICT, tt.message)
			assertEqual(t, "allowed", ErrorAllowed(err), tt.allowed)
		})
	}
}

func TestTransitionLineItemNotFound(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 1, 100))
	missing := uuid.MustParse("0190b3c4-0000-7000-8000-000000000099")
	_, err := o.TransitionLineItem(missing, StatusCancelled, "", "tester", tn(1))
	assertCode(t, err, ENOTFOUND, "Order 00000000-0000-0000-0000-000000000001 has no line item 0190b3c4-0000-7000-8000-000000000099.")
	assertEqual(t, "version", o.Version, int64(1))
}
