package outbox_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/outbox"
)

func TestNamesOf(t *testing.T) {
	t.Parallel()
	n, err := outbox.NamesOf("")
	if err != nil || n != (outbox.Names{Name: "outbox", DeadLetters: "outbox_dlq", Sequences: "outbox_sequences",
		Migrations: "outbox_migrations", Channel: "outbox"}) {
		t.Fatalf("default names: %+v, %v", n, err)
	}
	if n, err := outbox.NamesOf("order_outbox"); err != nil || n.DeadLetters != "order_outbox_dlq" {
		t.Errorf("order_outbox: %+v, %v", n, err)
	}
	for _, bad := range []string{"Payments", "1x", "_x", "pay-ments", "pay ments", `x"; DROP TABLE t; --`, "é", strings.Repeat("x", outbox.MaxOutboxNameLen+1),
		"order", "user", "select", "payments_dlq", "payments_sequences", "payments_migrations"} {
		if _, err := outbox.NamesOf(bad); err == nil || !strings.Contains(err.Error(), "invalid outbox name") { // reserved words and other outboxes' tables too
			t.Errorf("NamesOf(%q) = %v, want an invalid-name error", bad, err)
		}
	}
}
