package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// herald stats shows the events parked behind dead letters, in text and
// in JSON.
func TestStatsParked(t *testing.T) {
	t.Parallel()
	env := []string{"HERALD_DATABASE_URL=" + deadLetters(t, "a1", "a2")}
	if out := mustRun(t, env, "stats"); !strings.Contains(out, "parked          0\n") {
		t.Errorf("stats lacks the parked events:\n%s", out)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, env, "stats", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if p, ok := st["parked"]; !ok || p != 0.0 {
		t.Errorf("stats --json: parked %v (present %v)", p, ok)
	}
}
