package cli_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/cli"
)

// dlq prune deletes the resolved dead letters resolved more than
// --older-than ago, and with --include-open the open ones too.
func TestDLQPrune(t *testing.T) {
	t.Parallel()
	env := []string{"HERALD_DATABASE_URL=" + deadLetters(t, "a1", "a2", "a3", "a4")}
	ids := map[string]string{}
	for _, d := range listJSON(t, env) {
		ids[d.AggregateID] = strconv.FormatInt(d.ID, 10)
	}
	mustRun(t, env, "dlq", "replay", ids["a1"])
	mustRun(t, env, "dlq", "replay", ids["a2"])
	mustRun(t, env, "dlq", "discard", ids["a3"], "--reason", "obsolete")

	if out := mustRun(t, env, "dlq", "prune", "--older-than", "1h", "--include-open"); out != "pruned 0 dead letters\n" {
		t.Errorf("dlq prune --older-than 1h: %q", out)
	}
	time.Sleep(10 * time.Millisecond)
	if out := mustRun(t, env, "dlq", "prune", "--older-than", "1ms"); out != "pruned 3 dead letters\n" {
		t.Errorf("dlq prune --older-than 1ms: %q", out)
	}
	if got := listJSON(t, env, "--state", "all"); len(got) != 1 || got[0].AggregateID != "a4" {
		t.Errorf("dead letters after pruning: %+v", got)
	}
	if out := mustRun(t, env, "dlq", "prune", "--older-than", "0s", "--include-open"); out != "pruned 1 dead letter\n" {
		t.Errorf("dlq prune --include-open: %q", out)
	}
	if got := listJSON(t, env, "--state", "all"); len(got) != 0 {
		t.Errorf("dead letters after pruning the open one: %+v", got)
	}
}

// Bad flags of dlq prune exit 2 before anything is opened; --older-than
// has no variable.
func TestDLQPruneBadFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"dlq", "prune"}, "--older-than is required"},
		{nil, []string{"dlq", "prune", "--include-open"}, "--older-than is required"},
		{nil, []string{"dlq", "prune", "--older-than", "-1h"}, "--older-than must not be negative"},
		{nil, []string{"dlq", "prune", "--older-than", "a month"}, "--older-than"},
		{nil, []string{"dlq", "prune", "3", "--older-than", "1h"}, "takes no arguments"},
		{[]string{"HERALD_OLDER_THAN=1h", "HERALD_INCLUDE_OPEN=true"}, []string{"dlq", "prune"}, "--older-than is required"},
	} {
		dataDir := filepath.Join(t.TempDir(), "data")
		r := run(t, append([]string{"HERALD_DATA_DIR=" + dataDir}, tt.env...), tt.args...)
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("herald %v: exit %d, want %d saying %q:\n%s", tt.args, r.code, cli.ExitUsage, tt.want, r.stderr)
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("herald %v created the data directory", tt.args)
		}
	}
	if cli.EnvVar("older-than") != "" || cli.EnvVar("include-open") != "" {
		t.Error("dlq prune's flags have environment variables")
	}
}
