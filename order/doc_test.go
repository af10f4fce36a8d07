package order

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/STATE_MACHINES.md from the transition tables")

const stateMachinesDoc = "../docs/STATE_MACHINES.md"

// renderStateMachinesDoc renders docs/STATE_MACHINES.md from the tables in
// machine.go, so that the document cannot drift from the code.
func renderStateMachinesDoc() string {
	var b strings.Builder
	b.WriteString(`# State machines

<!-- Generated from order/machine.go by "go test ./order -run TestStateMachinesDoc -update". Do not edit. -->

Every status change of an order or a line item passes one of these machines and writes one
audit row (` + "`order_status_transitions`" + `) and one event in the same transaction. A transition
request the machine does not allow is refused with 409, naming the targets a request may ask for.

Each edge is labelled with what may make it happen:

- **request**: a transition request naming the target
  (` + "`POST /api/v1/orders/{id}/transitions`" + ` or ` + "`…/line-items/{item}/transitions`" + `).
  Cancelling an order by request also cancels each of its open line items.
- **payment confirmation**: only ` + "`POST /api/v1/orders/{id}/payment-confirmation`" + `, whose amount and
  currency must equal the order's; it moves the order and every pending line item together.
- **automatic**: Herald makes it on its own, in the same transaction as the line-item change
  that calls for it:
  - ` + "`payment_confirmed → processing`" + ` when a line item moves past ` + "`payment_confirmed`" + `
    (to anything but ` + "`cancelled`" + `);
  - ` + "`→ cancelled`" + ` when every line item is ` + "`cancelled`" + ` or ` + "`refunded`" + `;
  - ` + "`→ completed`" + ` when every line item is terminal and at least one is neither.

A line item cancelled while its order is still pending drops out of the order total (the amount
the payment must match); after payment the total no longer changes.
`)
	for _, m := range Machines() {
		title := "Order"
		if m != OrderMachine() {
			title = "Line item: " + m.Name()
		}
		fmt.Fprintf(&b, "\n## %s\n\n```mermaid\n%s```\n\n", title, m.Mermaid())
		b.WriteString("| from | to | by |\n|---|---|---|\n")
		for _, e := range m.Edges() {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", e.From, e.To, e.By)
		}
		var terminal []string
		for _, s := range m.TerminalStates() {
			terminal = append(terminal, "`"+string(s)+"`")
		}
		fmt.Fprintf(&b, "\nTerminal: %s.\n", strings.Join(terminal, ", "))
	}
	return b.String()
}

func TestStateMachinesDoc(t *testing.T) {
	t.Parallel()
	got := renderStateMachinesDoc()
	if *update {
		if err := os.WriteFile(stateMachinesDoc, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(stateMachinesDoc)
	if err != nil {
		t.Fatalf("%v (create it with: go test ./order -run TestStateMachinesDoc -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s is out of date with the transition tables; regenerate it with:\n"+
			"\tgo test ./order -run TestStateMachinesDoc -update\n--- rendered ---\n%s", filepath.Clean(stateMachinesDoc), got)
	}
}

func TestMermaid(t *testing.T) {
	t.Parallel()
	assertEqual(t, "order diagram", OrderMachine().Mermaid(), `stateDiagram-v2
    [*] --> pending
    pending --> payment_confirmed: payment confirmation
    payment_confirmed --> processing: automatic
    processing --> completed: automatic
    pending --> cancelled: request, automatic
    payment_confirmed --> cancelled: request, automatic
    processing --> cancelled: automatic
    completed --> [*]
    cancelled --> [*]
`)
}
