package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/cli"
)

// benchJSON runs herald bench and decodes its one line of standard output.
func benchJSON(t *testing.T, env []string, args ...string) map[string]any {
	t.Helper()
	r := run(t, env, append([]string{"bench"}, args...)...)
	if r.code != cli.ExitOK {
		t.Fatalf("herald bench %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("standard output is not one line:\n%s", r.stdout)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "herald bench --mode") {
		t.Errorf("no summary on standard error:\n%s", r.stderr)
	}
	return m
}

func TestBenchFull(t *testing.T) {
	t.Parallel()
	m := benchJSON(t, nil, "--orders", "10", "--seed", "1", "--concurrency", "2")
	for _, k := range []string{"orders", "events", "api_p50_ms", "api_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "events_per_sec", "lost", "reordered", "duplicates"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %v", k, m)
		}
	}
	if m["orders"] != 10.0 || m["lost"] != 0.0 || m["reordered"] != 0.0 || m["concurrency"] != 2.0 {
		t.Errorf("line %v", m)
	}
}

func TestBenchRelay(t *testing.T) {
	t.Parallel()
	m := benchJSON(t, nil, "--mode", "relay", "--events", "500", "--batch-size", "100")
	if m["events"] != 500.0 || m["lost"] != 0.0 || m["batch_size"] != 100.0 || m["db"] != "sqlite" {
		t.Errorf("line %v", m)
	}
}

func TestBenchUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"bench", "--mode", "nope"},
		{"bench", "--mode", "relay", "--url", "http://127.0.0.1:1"},
		{"bench", "--broker", "log"},
		{"bench", "extra"},
	} {
		r := run(t, nil, args...)
		if r.code != cli.ExitUsage {
			t.Errorf("herald %v: exit %d, want %d\n%s", args, r.code, cli.ExitUsage, r.stderr)
		}
	}
}

// TestBenchCompareRedis runs compare on the machine's Redis: the relay and
// the plain loop write to a stream of the bench's own.
func TestBenchCompareRedis(t *testing.T) {
	t.Parallel()
	m := benchJSON(t, nil, "--mode", "compare", "--events", "500", "--broker", "redis://127.0.0.1:6379")
	if m["events"] != 1000.0 || m["lost"] != 0.0 || m["reordered"] != 0.0 || m["broker"] != "redis" || m["relay_baseline_ratio"] == nil {
		t.Errorf("line %v", m)
	}
}
