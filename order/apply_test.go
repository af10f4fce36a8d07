package order

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestConfirmPayment(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 2, 1999), item(ProductDigital, 1, 500))
	p := ConfirmPayment{PaymentID: "pay_1", Amount: 4498, Currency: "EUR"}
	changes, err := o.ConfirmPayment(p, "alice", tn(1))
	if err != nil {
		t.Fatalf("ConfirmPayment: %v", err)
	}
	reason := "payment pay_1 confirmed"
	assertEqual(t, "changes", changes, []Change{
		{OrderID: id(1), From: StatusPending, To: StatusPaymentConfirmed, Reason: reason, Actor: "alice", At: tn(1), Payment: &p},
		{OrderID: id(1), LineItemID: id(2), From: StatusPending, To: StatusPaymentConfirmed, Reason: reason, Actor: "alice", At: tn(1)},
		{OrderID: id(1), LineItemID: id(3), From: StatusPending, To: StatusPaymentConfirmed, Reason: reason, Actor: "alice", At: tn(1)},
	})
	assertEqual(t, "statuses", statuses(&o), []Status{StatusPaymentConfirmed, StatusPaymentConfirmed, StatusPaymentConfirmed})
	assertEqual(t, "version", o.Version, int64(2))
	assertEqual(t, "total", o.TotalAmount, int64(4498))
	assertEqual(t, "updated at", o.UpdatedAt, tn(1))
	assertEqual(t, "created at", o.CreatedAt, t0.Truncate(1000))
}

func TestConfirmPaymentRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		order   Status
		p       ConfirmPayment
		code    string
		message string
		fields  []FieldError
		allowed []Status
	}{
		{"amount below total", StatusPending, ConfirmPayment{"pay_1", 2999, "EUR"}, EINVALID,
			"The payment does not match the order.", []FieldError{{"amount", "must equal the order total 3000"}}, nil},
		{"amount above total", StatusPending, ConfirmPayment{"pay_1", 3001, "EUR"}, EINVALID,
			"The payment does not match the order.", []FieldError{{"amount", "must equal the order total 3000"}}, nil},
		{"other currency", StatusPending, ConfirmPayment{"pay_1", 3000, "USD"}, EINVALID,
			"The payment does not match the order.", []FieldError{{"currency", "must equal the order currency EUR"}}, nil},
		{"both", StatusPending, ConfirmPayment{"pay_1", 1, "GBP"}, EINVALID,
			"The payment does not match the order.", []FieldError{{"amount", "must equal the order total 3000"}, {"currency", "must equal the order currency EUR"}}, nil},
		{"invalid request", StatusPending, ConfirmPayment{"", -1, "eur"}, EINVALID,
			"The payment confirmation is invalid.", []FieldError{
				{"payment_id", "is required"}, {"amount", "must not be negative"}, {"currency", "must be three upper-case letters (ISO 4217)"}}, nil},
		{"already paid", StatusPaymentConfirmed, ConfirmPayment{"pay_1", 3000, "EUR"}, ECONFLICT,
			"Order is payment_confirmed; a payment can be confirmed only while it is pending.", nil, []Status{StatusCancelled}},
		{"processing", StatusProcessing, ConfirmPayment{"pay_1", 3000, "EUR"}, ECONFLICT,
			"Order is processing; a payment can be confirmed only while it is pending.", nil, []Status{}},
		{"cancelled, even with a mismatch", StatusCancelled, ConfirmPayment{"pay_1", 1, "USD"}, ECONFLICT,
			"Order is cancelled; a payment can be confirmed only while it is pending.", nil, []Status{}},
		{"completed", StatusCompleted, ConfirmPayment{"pay_1", 3000, "EUR"}, ECONFLICT,
			"Order is completed; a payment can be confirmed only while it is pending.", nil, []Status{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := orderIn(tt.order)
			before := o.clone()
			changes, err := o.ConfirmPayment(tt.p, "alice", tn(1))
			assertCode(t, err, tt.code, tt.message)
			assertEqual(t, "fields", ErrorFields(err), tt.fields)
			assertEqual(t, "allowed", ErrorAllowed(err), tt.allowed)
			assertEqual(t, "changes", changes, []Change(nil))
			assertEqual(t, "order unchanged", o, before)
		})
	}
}

func TestConfirmPaymentBadActor(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 1, 10))
	_, err := o.ConfirmPayment(ConfirmPayment{"pay_1", 10, "EUR"}, "", tn(1))
	assertCode(t, err, EINVALID, "The actor is invalid.")
	assertEqual(t, "fields", ErrorFields(err), []FieldError{{"actor", "is required"}})
	assertEqual(t, "status", o.Status, StatusPending)
}

// A line item cancelled before payment drops out of the total the payment
// must match, and stays cancelled through the payment confirmation.
func TestCancelledItemLeavesTotalBeforePayment(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 2, 1999), item(ProductService, 1, 5000))
	assertEqual(t, "total at creation", o.TotalAmount, int64(8998))
	changes := move(t, &o, id(3), StatusCancelled)
	assertEqual(t, "changes", len(changes), 1)
	assertEqual(t, "total after cancel", o.TotalAmount, int64(3998))
	assertEqual(t, "order status", o.Status, StatusPending)

	_, err := o.ConfirmPayment(ConfirmPayment{"pay_1", 8998, "EUR"}, "alice", tn(3))
	assertCode(t, err, EINVALID, "")
	assertEqual(t, "fields", ErrorFields(err), []FieldError{{"amount", "must equal the order total 3998"}})

	changes, err = o.ConfirmPayment(ConfirmPayment{"pay_1", 3998, "EUR"}, "alice", tn(3))
	if err != nil {
		t.Fatalf("ConfirmPayment: %v", err)
	}
	assertEqual(t, "change count", len(changes), 2)
	assertEqual(t, "item change", changes[1].LineItemID, id(2))
	assertEqual(t, "statuses", statuses(&o), []Status{StatusPaymentConfirmed, StatusPaymentConfirmed, StatusCancelled})
	assertEqual(t, "version", o.Version, int64(3))

	// After payment a cancellation no longer changes the total.
	changes = move(t, &o, id(2), StatusCancelled)
	assertEqual(t, "total after paid cancel", o.TotalAmount, int64(3998))
	assertEqual(t, "auto-cancel", changes[1], Change{OrderID: id(1), From: StatusPaymentConfirmed, To: StatusCancelled,
		Reason: ReasonAllLineItemsVoid, Actor: "tester", Automatic: true, At: tn(2)})
}

func TestProcessingOnFirstMove(t *testing.T) {
	t.Parallel()
	o := paidOrder(t, item(ProductPhysical, 1, 100), item(ProductDigital, 1, 200))
	changes := move(t, &o, id(2), StatusPreparing)
	assertEqual(t, "changes", changes, []Change{
		{OrderID: id(1), LineItemID: id(2), From: StatusPaymentConfirmed, To: StatusPreparing, Actor: "tester", At: tn(2)},
		{OrderID: id(1), From: StatusPaymentConfirmed, To: StatusProcessing, Reason: "line item 00000000-0000-0000-0000-000000000002 moved to preparing",
			Actor: "tester", Automatic: true, At: tn(2)},
	})
	assertEqual(t, "statuses", statuses(&o), []Status{StatusProcessing, StatusPreparing, StatusPaymentConfirmed})
	assertEqual(t, "version", o.Version, int64(3))

	// Later moves leave the order in processing.
	changes = move(t, &o, id(3), StatusAccessGranted)
	assertEqual(t, "second move changes", len(changes), 1)
	assertEqual(t, "order status", o.Status, StatusProcessing)
	assertEqual(t, "version", o.Version, int64(4))
}

func TestProcessingTriggers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pt         ProductType
		to         Status
		processing bool
	}{
		{ProductPhysical, StatusPreparing, true},
		{ProductPhysical, StatusCancelled, false},
		{ProductDigital, StatusAccessGranted, true},
		{ProductDigital, StatusRefundRequested, true},
		{ProductDigital, StatusCancelled, false},
		{ProductService, StatusBookingConfirmed, true},
		{ProductService, StatusCancelled, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.pt)+"→"+string(tt.to), func(t *testing.T) {
			t.Parallel()
			// A second item keeps the order from ending.
			o := paidOrder(t, item(tt.pt, 1, 100), item(ProductPhysical, 1, 100))
			changes := move(t, &o, id(2), tt.to)
			want := StatusPaymentConfirmed
			if tt.processing {
				want = StatusProcessing
			}
			assertEqual(t, "order status", o.Status, want)
			assertEqual(t, "change count", len(changes), map[bool]int{false: 1, true: 2}[tt.processing])
		})
	}
}

func TestCompleted(t *testing.T) {
	t.Parallel()
	o := paidOrder(t, item(ProductPhysical, 1, 100), item(ProductService, 1, 200), item(ProductDigital, 1, 300))
	move(t, &o, id(2), StatusPreparing, StatusReadyToShip, StatusShipped, StatusDelivered)
	move(t, &o, id(3), StatusBookingConfirmed, StatusReminderSent, StatusInProgress, StatusCompleted)
	assertEqual(t, "order still processing", o.Status, StatusProcessing)
	changes := move(t, &o, id(4), StatusAccessGranted, StatusDownloaded)
	assertEqual(t, "changes", changes, []Change{
		{OrderID: id(1), LineItemID: id(4), From: StatusAccessGranted, To: StatusDownloaded, Actor: "tester", At: tn(2)},
		{OrderID: id(1), From: StatusProcessing, To: StatusCompleted, Reason: ReasonAllLineItemsDone, Actor: "tester", Automatic: true, At: tn(2)},
	})
	assertEqual(t, "statuses", statuses(&o), []Status{StatusCompleted, StatusDelivered, StatusCompleted, StatusDownloaded})
	assertEqual(t, "version", o.Version, int64(2+4+4+2))
}

func TestAutomaticEnd(t *testing.T) {
	t.Parallel()
	type step struct {
		item int
		to   []Status
	}
	tests := []struct {
		name   string
		items  []CreateLineItem
		steps  []step
		status Status
		reason string
		from   Status
	}{
		{"all cancelled after processing", []CreateLineItem{item(ProductPhysical, 1, 1), item(ProductService, 1, 1)},
			[]step{{2, []Status{StatusPreparing, StatusCancelled}}, {3, []Status{StatusBookingConfirmed, StatusCancelled}}},
			StatusCancelled, ReasonAllLineItemsVoid, StatusProcessing},
		{"cancelled and refunded", []CreateLineItem{item(ProductPhysical, 1, 1), item(ProductDigital, 1, 1)},
			[]step{{2, []Status{StatusCancelled}}, {3, []Status{StatusAccessGranted, StatusRefundRequested, StatusRefunded}}},
			StatusCancelled, ReasonAllLineItemsVoid, StatusProcessing},
		{"all refunded", []CreateLineItem{item(ProductDigital, 1, 1), item(ProductDigital, 1, 1)},
			[]step{{2, []Status{StatusRefundRequested, StatusRefunded}}, {3, []Status{StatusRefundRequested, StatusRefunded}}},
			StatusCancelled, ReasonAllLineItemsVoid, StatusProcessing},
		{"all cancelled before fulfilment", []CreateLineItem{item(ProductPhysical, 1, 1), item(ProductDigital, 1, 1)},
			[]step{{2, []Status{StatusCancelled}}, {3, []Status{StatusCancelled}}},
			StatusCancelled, ReasonAllLineItemsVoid, StatusPaymentConfirmed},
		{"refunded and downloaded", []CreateLineItem{item(ProductDigital, 1, 1), item(ProductDigital, 1, 1)},
			[]step{{2, []Status{StatusRefundRequested, StatusRefunded}}, {3, []Status{StatusAccessGranted, StatusDownloaded}}},
			StatusCompleted, ReasonAllLineItemsDone, StatusProcessing},
		{"downloaded then refunded", []CreateLineItem{item(ProductDigital, 1, 1), item(ProductDigital, 1, 1)},
			[]step{{2, []Status{StatusAccessGranted, StatusDownloaded}}, {3, []Status{StatusAccessGranted, StatusRefundRequested, StatusRefunded}}},
			StatusCompleted, ReasonAllLineItemsDone, StatusProcessing},
		{"cancelled and no-show", []CreateLineItem{item(ProductPhysical, 1, 1), item(ProductService, 1, 1)},
			[]step{{2, []Status{StatusCancelled}}, {3, []Status{StatusBookingConfirmed, StatusReminderSent, StatusNoShow}}},
			StatusCompleted, ReasonAllLineItemsDone, StatusProcessing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := paidOrder(t, tt.items...)
			var changes []Change
			for _, s := range tt.steps {
				changes = move(t, &o, id(s.item), s.to...)
			}
			assertEqual(t, "order status", o.Status, tt.status)
			last := changes[len(changes)-1]
			assertEqual(t, "automatic change", last, Change{OrderID: id(1), From: tt.from, To: tt.status,
				Reason: tt.reason, Actor: "tester", Automatic: true, At: tn(2)})
			assertEqual(t, "changes", len(changes), 2)
		})
	}
}

// Cancelling every line item of a pending order one by one cancels the order.
func TestAutoCancelWhilePending(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 1, 100), item(ProductService, 3, 50))
	move(t, &o, id(2), StatusCancelled)
	changes := move(t, &o, id(3), StatusCancelled)
	assertEqual(t, "changes", changes, []Change{
		{OrderID: id(1), LineItemID: id(3), From: StatusPending, To: StatusCancelled, Actor: "tester", At: tn(2)},
		{OrderID: id(1), From: StatusPending, To: StatusCancelled, Reason: ReasonAllLineItemsVoid, Actor: "tester", Automatic: true, At: tn(2)},
	})
	assertEqual(t, "total", o.TotalAmount, int64(0))
	assertEqual(t, "version", o.Version, int64(3))
}

func TestCancelByRequestCascades(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		paid  bool
		total int64
	}{
		{"from pending", false, 0},
		{"from payment_confirmed", true, 700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newOrder(t, item(ProductPhysical, 1, 100), item(ProductDigital, 2, 150), item(ProductService, 1, 400))
			move(t, &o, id(3), StatusCancelled) // already cancelled: no second change
			from := StatusPending
			if tt.paid {
				if _, err := o.ConfirmPayment(ConfirmPayment{"pay_1", 500, "EUR"}, "alice", tn(3)); err != nil {
					t.Fatal(err)
				}
				from = StatusPaymentConfirmed
			}
			version := o.Version
			changes, err := o.Transition(StatusCancelled, "customer asked", "bob", tn(4))
			if err != nil {
				t.Fatalf("Transition: %v", err)
			}
			assertEqual(t, "changes", changes, []Change{
				{OrderID: id(1), From: from, To: StatusCancelled, Reason: "customer asked", Actor: "bob", At: tn(4)},
				{OrderID: id(1), LineItemID: id(2), From: from, To: StatusCancelled, Reason: "customer asked", Actor: "bob", At: tn(4)},
				{OrderID: id(1), LineItemID: id(4), From: from, To: StatusCancelled, Reason: "customer asked", Actor: "bob", At: tn(4)},
			})
			assertEqual(t, "statuses", statuses(&o), []Status{StatusCancelled, StatusCancelled, StatusCancelled, StatusCancelled})
			assertEqual(t, "version", o.Version, version+1)
			// Before payment the total is what is owed: nothing, once cancelled.
			if tt.paid {
				assertEqual(t, "total", o.TotalAmount, int64(500))
			} else {
				assertEqual(t, "total", o.TotalAmount, tt.total)
			}
		})
	}
}

func TestCancelByRequestRefusedInProcessing(t *testing.T) {
	t.Parallel()
	o := paidOrder(t, item(ProductPhysical, 1, 100), item(ProductDigital, 1, 100))
	move(t, &o, id(2), StatusPreparing)
	before := o.clone()
	_, err := o.Transition(StatusCancelled, "", "bob", tn(5))
	assertCode(t, err, ECONFLICT, "Order cannot move from processing to cancelled by request: it happens only automatically, as the line items progress.")
	assertEqual(t, "allowed", ErrorAllowed(err), []Status{})
	assertEqual(t, "order unchanged", o, before)
}

func TestTransitionInvalidInput(t *testing.T) {
	t.Parallel()
	long := make([]byte, MaxReasonLen+1)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name   string
		to     Status
		reason string
		actor  string
		fields []FieldError
	}{
		{"empty to", "", "", "bob", []FieldError{{"to", "is required"}}},
		{"unknown to", "shipped!", "", "bob", []FieldError{{"to", "is not a known status"}}},
		{"long reason", StatusCancelled, string(long), "bob", []FieldError{{"reason", "must be at most 500 characters"}}},
		{"control in reason", StatusCancelled, "a\x00b", "bob", []FieldError{{"reason", "must not contain control characters"}}},
		{"no actor", StatusCancelled, "", "", []FieldError{{"actor", "is required"}}},
		{"all", "", "\xff", "\t", []FieldError{{"to", "is required"}, {"reason", "must be valid UTF-8"}, {"actor", "must not contain control characters"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, op := range []string{"order", "line item"} {
				o := newOrder(t, item(ProductPhysical, 1, 1))
				var err error
				if op == "order" {
					_, err = o.Transition(tt.to, tt.reason, tt.actor, tn(1))
				} else {
					_, err = o.TransitionLineItem(id(2), tt.to, tt.reason, tt.actor, tn(1))
				}
				assertCode(t, err, EINVALID, "The transition request is invalid.")
				assertEqual(t, op+" fields", ErrorFields(err), tt.fields)
				assertEqual(t, op+" version", o.Version, int64(1))
			}
		})
	}
}

func TestVersionIncrementsOncePerRequest(t *testing.T) {
	t.Parallel()
	o := newOrder(t, item(ProductPhysical, 1, 100), item(ProductPhysical, 1, 100))
	assertEqual(t, "created", o.Version, int64(1))
	if _, err := o.ConfirmPayment(ConfirmPayment{"pay_1", 200, "EUR"}, "a", tn(1)); err != nil {
		t.Fatal(err)
	}
	assertEqual(t, "after payment (3 changes)", o.Version, int64(2))
	if _, err := o.TransitionLineItem(id(2), StatusShipped, "", "a", tn(2)); err == nil {
		t.Fatal("skipping a step succeeded")
	}
	assertEqual(t, "after refused request", o.Version, int64(2))
	move(t, &o, id(2), StatusPreparing)
	assertEqual(t, "after a move with an automatic change", o.Version, int64(3))
	move(t, &o, id(2), StatusCancelled)
	assertEqual(t, "after a plain move", o.Version, int64(4))
	changes := move(t, &o, id(3), StatusCancelled)
	assertEqual(t, "changes of the last request", len(changes), 2)
	assertEqual(t, "after a move that ends the order", o.Version, int64(5))
	assertEqual(t, "check version ok", o.CheckVersion(5), error(nil))
	err := o.CheckVersion(4)
	assertCode(t, err, EPRECONDITION, "Order 00000000-0000-0000-0000-000000000001 is at version 5, not 4.")
}

// TestRandomWalkInvariants drives orders through random requests and checks
// after each one that the order and its line items stay consistent.
func TestRandomWalkInvariants(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	requestable := allStatuses[:len(allStatuses)-1]
	seen := map[string]bool{} // "order:completed", "digital:refunded", …
	for walk := range 300 {
		var items []CreateLineItem
		for range 1 + rng.IntN(4) {
			items = append(items, item(ProductTypes()[rng.IntN(3)], 1+rng.Int64N(3), rng.Int64N(1000)))
		}
		o := newOrder(t, items...)
		for step := range 40 {
			before := o.clone()
			var changes []Change
			var err error
			switch rng.IntN(10) {
			case 0:
				changes, err = o.ConfirmPayment(ConfirmPayment{"pay", o.TotalAmount, "EUR"}, "w", tn(step))
			case 1:
				changes, err = o.Transition(requestable[rng.IntN(len(requestable))], "", "w", tn(step))
			default:
				li := o.LineItems[rng.IntN(len(o.LineItems))]
				targets := LineItemTargets(li.ProductType, li.Status)
				to := requestable[rng.IntN(len(requestable))]
				if len(targets) > 0 && rng.IntN(4) > 0 {
					to = targets[rng.IntN(len(targets))]
				}
				changes, err = o.TransitionLineItem(li.ID, to, "", "w", tn(step))
			}
			if err != nil {
				if c := ErrorCode(err); c != ECONFLICT {
					t.Fatalf("walk %d step %d: unexpected %s: %v", walk, step, c, err)
				}
				assertEqual(t, "order after refusal", o, before)
				continue
			}
			if o.Version != before.Version+1 || len(changes) == 0 {
				t.Fatalf("walk %d step %d: version %d→%d with %d changes", walk, step, before.Version, o.Version, len(changes))
			}
			checkChanges(t, &before, &o, changes)
			checkConsistent(t, &o)
			seen["order:"+string(o.Status)] = true
			for _, li := range o.LineItems {
				seen[string(li.ProductType)+":"+string(li.Status)] = true
			}
		}
	}
	// The walk must have visited every status of every machine.
	for _, m := range Machines() {
		for _, s := range m.States() {
			if !seen[m.Name()+":"+string(s)] {
				t.Errorf("the walk never reached %s %s", m.Name(), s)
			}
		}
	}
}

// checkChanges checks that replaying changes on before, each along an edge of
// its machine, yields after.
func checkChanges(t *testing.T, before, after *Order, changes []Change) {
	t.Helper()
	replay := before.clone()
	for _, c := range changes {
		if c.OrderLevel() {
			if c.From != replay.Status || orderMachine.Trigger(c.From, c.To) == 0 {
				t.Fatalf("bad order change %+v from %s", c, replay.Status)
			}
			if c.Automatic && !orderMachine.Allows(c.From, c.To, Automatically) ||
				!c.Automatic && !orderMachine.Allows(c.From, c.To, ByRequest|ByPayment) {
				t.Fatalf("change %+v along an edge its trigger may not take", c)
			}
			replay.Status = c.To
			continue
		}
		li := replay.LineItem(c.LineItemID)
		if li == nil || c.From != li.Status || LineItemMachine(li.ProductType).Trigger(c.From, c.To) == 0 || c.Automatic {
			t.Fatalf("bad line item change %+v", c)
		}
		li.Status = c.To
	}
	if !slices.Equal(statuses(&replay), statuses(after)) {
		t.Fatalf("replayed %v, order is %v", statuses(&replay), statuses(after))
	}
}

// checkConsistent checks the order's status against its line items'.
func checkConsistent(t *testing.T, o *Order) {
	t.Helper()
	allTerminal, void := true, true
	var owed int64
	for _, li := range o.LineItems {
		if !LineItemMachine(li.ProductType).Terminal(li.Status) {
			allTerminal = false
		}
		if li.Status != StatusCancelled && li.Status != StatusRefunded {
			void = false
		}
		if li.Status != StatusCancelled {
			owed += li.Amount()
		}
		var ok bool
		switch o.Status {
		case StatusPending:
			ok = li.Status == StatusPending || li.Status == StatusCancelled
		case StatusPaymentConfirmed:
			ok = li.Status == StatusPaymentConfirmed || li.Status == StatusCancelled
		default:
			ok = li.Status != StatusPending
		}
		if !ok {
			t.Fatalf("order %s has a line item in %s: %v", o.Status, li.Status, statuses(o))
		}
	}
	switch {
	case allTerminal && void && o.Status != StatusCancelled,
		allTerminal && !void && o.Status != StatusCompleted,
		!allTerminal && orderMachine.Terminal(o.Status):
		t.Fatalf("order status %s inconsistent with line items %v", o.Status, statuses(o))
	}
	if o.Status == StatusPending && o.TotalAmount != owed {
		t.Fatalf("pending total %d, open line items sum to %d", o.TotalAmount, owed)
	}
}
