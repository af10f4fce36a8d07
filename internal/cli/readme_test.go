package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func readREADME(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The command table of README.md names every dlq command.
func TestREADMECommandsDLQ(t *testing.T) {
	t.Parallel()
	readme := readREADME(t)
	c := newCLI(nil, nil, nil)
	for _, sub := range c.dlqCommand().Commands() {
		if !strings.Contains(readme, "| `herald dlq "+sub.Name()) {
			t.Errorf("README.md's command table lacks herald dlq %s", sub.Name())
		}
	}
}

// The tour's audit-trail line tells the order's transitions from each line
// item's: a line item's lines would otherwise look like one repeated bug.
func TestREADMETourAuditTrail(t *testing.T) {
	t.Parallel()
	m := regexp.MustCompile(`(?m)^curl -s \$API/orders/\$ID/transitions \| jq -r '([^']+)'$`).FindStringSubmatch(readREADME(t))
	if m == nil {
		t.Fatal("README.md's tour has no audit-trail jq line")
	}
	if !strings.Contains(m[1], ".line_item_id") {
		t.Fatalf("the tour's audit trail does not show line_item_id: %s", m[1])
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("no jq")
	}
	const trail = `{"transitions": [
		{"from": null, "to": "pending", "line_item_id": null, "actor": "api"},
		{"from": "pending", "to": "pending", "line_item_id": "item-1", "actor": "system"},
		{"from": "pending", "to": "pending", "line_item_id": "item-2", "actor": "system"}]}`
	cmd := exec.Command("jq", "-r", m[1])
	cmd.Stdin = strings.NewReader(trail)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jq %s: %v", m[1], err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[1] == lines[2] || !strings.Contains(lines[0], "order") || !strings.Contains(lines[1], "item-1") {
		t.Errorf("the tour's audit trail prints:\n%s", out)
	}
}
