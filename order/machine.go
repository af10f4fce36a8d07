package order

import (
	"fmt"
	"strings"
)

// Trigger says what may make a transition happen. A transition may have
// more than one.
type Trigger uint8

// Triggers.
const (
	// ByRequest: a transition request naming the target makes it. An order's
	// cancellation by request also cancels its open line items this way.
	ByRequest Trigger = 1 << iota
	// ByPayment: only a payment confirmation makes it (pending →
	// payment_confirmed, for the order and its line items together).
	ByPayment
	// Automatically: the machine makes it on its own when its rule holds
	// (order transitions driven by the line items).
	Automatically
)

// String lists the triggers, e.g. "request, automatic".
func (t Trigger) String() string {
	var parts []string
	if t&ByRequest != 0 {
		parts = append(parts, "request")
	}
	if t&ByPayment != 0 {
		parts = append(parts, "payment confirmation")
	}
	if t&Automatically != 0 {
		parts = append(parts, "automatic")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Edge is one allowed transition of a Machine.
type Edge struct {
	From, To Status
	By       Trigger
}

// Machine is a finite-state machine held as data: the transition table of
// the order, or of the line items of one product type. A status with no way
// out is terminal. Machines are immutable.
type Machine struct {
	name    string
	initial Status
	states  []Status // initial first, then in order of appearance in edges
	edges   []Edge
	index   map[Status]map[Status]Trigger
}

// The transition tables (drawn in docs/STATE_MACHINES.md). Edit them here and nowhere else;
// docs/STATE_MACHINES.md is rendered from them (go test ./order -update).
var (
	orderMachine = newMachine("order", StatusPending, []Edge{
		{StatusPending, StatusPaymentConfirmed, ByPayment},
		{StatusPaymentConfirmed, StatusProcessing, Automatically},
		{StatusProcessing, StatusCompleted, Automatically},
		{StatusPending, StatusCancelled, ByRequest | Automatically},
		{StatusPaymentConfirmed, StatusCancelled, ByRequest | Automatically},
		{StatusProcessing, StatusCancelled, Automatically},
	})

	physicalMachine = newMachine(string(ProductPhysical), StatusPending, []Edge{
		{StatusPending, StatusPaymentConfirmed, ByPayment},
		{StatusPaymentConfirmed, StatusPreparing, ByRequest},
		{StatusPreparing, StatusReadyToShip, ByRequest},
		{StatusReadyToShip, StatusShipped, ByRequest},
		{StatusShipped, StatusDelivered, ByRequest},
		{StatusPending, StatusCancelled, ByRequest},
		{StatusPaymentConfirmed, StatusCancelled, ByRequest},
		{StatusPreparing, StatusCancelled, ByRequest},
		{StatusReadyToShip, StatusCancelled, ByRequest},
	})

	digitalMachine = newMachine(string(ProductDigital), StatusPending, []Edge{
		{StatusPending, StatusPaymentConfirmed, ByPayment},
		{StatusPaymentConfirmed, StatusAccessGranted, ByRequest},
		{StatusAccessGranted, StatusDownloaded, ByRequest},
		{StatusPending, StatusCancelled, ByRequest},
		{StatusPaymentConfirmed, StatusCancelled, ByRequest},
		{StatusPaymentConfirmed, StatusRefundRequested, ByRequest},
		{StatusAccessGranted, StatusRefundRequested, ByRequest},
		{StatusRefundRequested, StatusRefunded, ByRequest},
	})

	serviceMachine = newMachine(string(ProductService), StatusPending, []Edge{
		{StatusPending, StatusPaymentConfirmed, ByPayment},
		{StatusPaymentConfirmed, StatusBookingConfirmed, ByRequest},
		{StatusBookingConfirmed, StatusReminderSent, ByRequest},
		{StatusReminderSent, StatusInProgress, ByRequest},
		{StatusInProgress, StatusCompleted, ByRequest},
		{StatusPending, StatusCancelled, ByRequest},
		{StatusPaymentConfirmed, StatusCancelled, ByRequest},
		{StatusBookingConfirmed, StatusCancelled, ByRequest},
		{StatusReminderSent, StatusCancelled, ByRequest},
		{StatusReminderSent, StatusNoShow, ByRequest},
		{StatusInProgress, StatusNoShow, ByRequest},
	})

	// knownStatuses is the union of every machine's statuses.
	knownStatuses = func() map[Status]struct{} {
		m := make(map[Status]struct{})
		for _, mc := range Machines() {
			for _, s := range mc.states {
				m[s] = struct{}{}
			}
		}
		return m
	}()
)

func newMachine(name string, initial Status, edges []Edge) *Machine {
	m := &Machine{
		name:    name,
		initial: initial,
		states:  []Status{initial},
		edges:   edges,
		index:   make(map[Status]map[Status]Trigger),
	}
	seen := map[Status]bool{initial: true}
	for _, e := range edges {
		if e.From == e.To || e.By == 0 || m.index[e.From][e.To] != 0 {
			panic(fmt.Sprintf("order: machine %s: bad or duplicate edge %v", name, e))
		}
		if m.index[e.From] == nil {
			m.index[e.From] = make(map[Status]Trigger)
		}
		m.index[e.From][e.To] = e.By
		for _, s := range []Status{e.From, e.To} {
			if !seen[s] {
				seen[s] = true
				m.states = append(m.states, s)
			}
		}
	}
	return m
}

// OrderMachine returns the order's machine.
func OrderMachine() *Machine { return orderMachine }

// LineItemMachine returns the machine of line items of product type pt, or
// nil for an unknown product type.
func LineItemMachine(pt ProductType) *Machine {
	switch pt {
	case ProductPhysical:
		return physicalMachine
	case ProductDigital:
		return digitalMachine
	case ProductService:
		return serviceMachine
	}
	return nil
}

// Machines returns every machine: the order's, then one per product type.
func Machines() []*Machine {
	return []*Machine{orderMachine, physicalMachine, digitalMachine, serviceMachine}
}

// Name is "order" or the product type.
func (m *Machine) Name() string { return m.name }

// Initial returns the status everything starts in.
func (m *Machine) Initial() Status { return m.initial }

// States returns the machine's statuses, initial first.
func (m *Machine) States() []Status { return append([]Status(nil), m.states...) }

// Edges returns the transition table.
func (m *Machine) Edges() []Edge { return append([]Edge(nil), m.edges...) }

// Has reports whether s is one of the machine's statuses.
func (m *Machine) Has(s Status) bool {
	for _, st := range m.states {
		if st == s {
			return true
		}
	}
	return false
}

// Trigger returns what may make from → to happen; 0 if nothing may.
func (m *Machine) Trigger(from, to Status) Trigger { return m.index[from][to] }

// Allows reports whether from → to may be made by any trigger in by.
func (m *Machine) Allows(from, to Status, by Trigger) bool {
	return m.index[from][to]&by != 0
}

// Targets returns the statuses reachable from from in one transition by any
// trigger in by, in table order.
func (m *Machine) Targets(from Status, by Trigger) []Status {
	var out []Status
	for _, e := range m.edges {
		if e.From == from && e.By&by != 0 {
			out = append(out, e.To)
		}
	}
	return out
}

// Terminal reports whether s is one of the machine's statuses and has no way
// out.
func (m *Machine) Terminal(s Status) bool {
	return m.Has(s) && len(m.index[s]) == 0
}

// TerminalStates returns the terminal statuses, in state order.
func (m *Machine) TerminalStates() []Status {
	var out []Status
	for _, s := range m.states {
		if m.Terminal(s) {
			out = append(out, s)
		}
	}
	return out
}

// OrderTargets returns the statuses a transition request may move an order
// in status from to: what a refused request names as allowed.
func OrderTargets(from Status) []Status {
	return orderMachine.Targets(from, ByRequest)
}

// LineItemTargets returns the statuses a transition request may move a line
// item of product type pt in status from to; nil for an unknown product type.
func LineItemTargets(pt ProductType, from Status) []Status {
	m := LineItemMachine(pt)
	if m == nil {
		return nil
	}
	return m.Targets(from, ByRequest)
}

// Known reports whether s is a status of any machine.
func (s Status) Known() bool {
	_, ok := knownStatuses[s]
	return ok
}

// Mermaid renders the machine as a Mermaid state diagram: the initial status
// entered from [*], each edge labelled with its triggers, terminal statuses
// leading to [*].
func (m *Machine) Mermaid() string {
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	fmt.Fprintf(&b, "    [*] --> %s\n", m.initial)
	for _, e := range m.edges {
		fmt.Fprintf(&b, "    %s --> %s: %s\n", e.From, e.To, e.By)
	}
	for _, s := range m.TerminalStates() {
		fmt.Fprintf(&b, "    %s --> [*]\n", s)
	}
	return b.String()
}
