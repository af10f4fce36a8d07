package cli_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/cli"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestMigrateSQLite(t *testing.T) {
	t.Parallel()
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "sub", "herald.db")
	testMigrate(t, dbURL)
}

func TestMigratePostgres(t *testing.T) {
	t.Parallel()
	url, _ := testdb.PostgresSchema(t)
	testMigrate(t, url)
}

func testMigrate(t *testing.T, dbURL string) {
	env := []string{"HERALD_DATABASE_URL=" + dbURL}
	if file, ok := strings.CutPrefix(dbURL, "sqlite://"); ok {
		// An operator command opens an existing database only: it
		// neither creates the file nor its directory.
		for _, args := range [][]string{{"migrate", "--status"}, {"stats"}, {"dlq", "list"}, {"check", "--broker", "nats://127.0.0.1:1"}} {
			r := run(t, env, args...)
			if r.code != cli.ExitFailure || !strings.Contains(r.stderr, "no Herald database at "+file) ||
				!strings.Contains(r.stderr, "run herald serve or herald migrate first") {
				t.Errorf("herald %v on a missing database: exit %d\n%s", args, r.code, r.stderr)
			}
		}
		if _, err := os.Stat(filepath.Dir(file)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("an operator command created %s: %v", filepath.Dir(file), err)
		}
		// An empty file is a database without Herald's tables.
		if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := run(t, env, "stats"); r.code != cli.ExitFailure || !strings.Contains(r.stderr, "it has no outbox tables") {
			t.Errorf("herald stats on a database without tables: exit %d\n%s", r.code, r.stderr)
		}
	}
	// Pending migrations: exit 3, for a deploy script to test.
	pendingStatus := func() string {
		t.Helper()
		r := run(t, env, "migrate", "--status")
		if r.code != cli.ExitPending {
			t.Fatalf("migrate --status with migrations pending: exit %d, want %d\n%s", r.code, cli.ExitPending, r.stderr)
		}
		return r.stdout
	}
	status := pendingStatus()
	for _, want := range []string{"SET", "outbox", "orders", "00001_", "pending", "migrations pending: run herald migrate"} {
		if !strings.Contains(status, want) {
			t.Errorf("migrate --status before migrating lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "applied") {
		t.Errorf("migrate --status changed something:\n%s", status)
	}
	if again := pendingStatus(); again != status {
		t.Errorf("a second migrate --status differs:\n%s\nthen\n%s", status, again)
	}

	out := mustRun(t, env, "migrate")
	if !strings.Contains(out, "applied outbox 1") || !strings.Contains(out, "applied orders 1") ||
		!strings.Contains(out, "the schema is up to date") {
		t.Errorf("migrate output:\n%s", out)
	}
	status = mustRun(t, env, "migrate", "--status")
	if strings.Contains(status, "pending") || !strings.Contains(status, "the schema is up to date") {
		t.Errorf("migrate --status after migrating:\n%s", status)
	}
	for line := range strings.Lines(status) {
		if strings.HasPrefix(line, "outbox") || strings.HasPrefix(line, "orders") {
			if !strings.Contains(line, "applied 20") {
				t.Errorf("migration not applied: %s", line)
			}
		}
	}
	if out := mustRun(t, env, "migrate"); !strings.Contains(out, "no migration to apply") {
		t.Errorf("second migrate output:\n%s", out)
	}
}

// failing is a publisher that refuses every event for good.
type failing struct{}

func (failing) Publish(_ context.Context, msgs []outbox.Message) []error {
	return outbox.AllFailed(len(msgs), outbox.Permanent(errors.New("broker says no: schema mismatch")))
}
func (failing) Close() error { return nil }

// deadLetters makes a migrated SQLite database whose outbox has one dead
// letter per aggregate id, made by a relay whose publisher refuses them.
func deadLetters(t *testing.T, aggregateIDs ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "herald.db")
	dbURL := "sqlite://" + path
	mustRun(t, []string{"HERALD_DATABASE_URL=" + dbURL}, "migrate")

	d, err := sqlitestore.Open(path, sqlitestore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := outbox.NewClient[*sql.Tx](d)
	for _, id := range aggregateIDs {
		if _, err := client.Enqueue(ctx, outbox.Event{
			AggregateType: "order", AggregateID: id, Type: "order.created", Sequence: 1, // as the orders service numbers it
			Payload: json.RawMessage(`{"order_id":"` + id + `"}`),
			Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	relay := outbox.NewRelay(d, failing{}, outbox.RelayConfig{PollInterval: 10 * time.Millisecond})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Run(rctx)
	}()
	waitFor(t, "the dead letters", func() bool {
		st, err := d.Stats(ctx)
		return err == nil && st.DeadLetters == int64(len(aggregateIDs))
	})
	stop()
	<-done
	return dbURL
}

// listed is one dead letter of dlq list --json.
type listed struct {
	ID          int64  `json:"id"`
	State       string `json:"state"`
	AggregateID string `json:"aggregate_id"`
	EventType   string `json:"event_type"`
	Error       string `json:"error"`
	Attempts    int    `json:"attempts"`
}

func listJSON(t *testing.T, env []string, args ...string) []listed {
	t.Helper()
	var out []listed
	if err := json.Unmarshal([]byte(mustRun(t, env, append([]string{"dlq", "list", "--json"}, args...)...)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDLQ(t *testing.T) {
	t.Parallel()
	env := []string{"HERALD_DATABASE_URL=" + deadLetters(t, "a1", "a2", "a3", "a4")}

	// stats
	out := mustRun(t, env, "stats")
	for _, want := range []string{"pending         0", "dead letters    4", "lag             0s"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}

	// list
	out = mustRun(t, env, "dlq", "list")
	for _, want := range []string{"ID", "STATE", "order.created", "order a1", "order a4", "open", "broker says no"} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, out)
		}
	}
	all := listJSON(t, env)
	if len(all) != 4 {
		t.Fatalf("dlq list --json: %+v", all)
	}
	ids := map[string]int64{}
	for _, d := range all {
		ids[d.AggregateID] = d.ID
		if d.State != "open" || d.EventType != "order.created" || d.Attempts != 1 || !strings.Contains(d.Error, "schema mismatch") {
			t.Errorf("dead letter %+v", d)
		}
	}
	if got := listJSON(t, env, "--aggregate-id", "a2"); len(got) != 1 || got[0].AggregateID != "a2" {
		t.Errorf("dlq list --aggregate-id a2: %+v", got)
	}
	paged := listJSON(t, env, "--limit", "2")
	if len(paged) != 2 {
		t.Fatalf("dlq list --limit 2: %+v", paged)
	}
	if out := mustRun(t, env, "dlq", "list", "--limit", "2"); !strings.Contains(out, fmt.Sprintf("more with --after %d", paged[1].ID)) {
		t.Errorf("dlq list --limit 2 does not say how to page:\n%s", out)
	}
	if got := listJSON(t, env, "--after", strconv.FormatInt(paged[1].ID, 10)); len(got) != 2 {
		t.Errorf("dlq list --after: %+v", got)
	}

	// show
	a1 := strconv.FormatInt(ids["a1"], 10)
	out = mustRun(t, env, "dlq", "show", a1)
	for _, want := range []string{"id", a1, "state", "open", "order.created", "order a1", "sequence", "broker says no", "header traceparent", `"order_id": "a1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, out)
		}
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, env, "dlq", "show", a1, "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["aggregate_id"] != "a1" || shown["payload"] == nil {
		t.Errorf("dlq show --json: %v", shown)
	}
	if r := run(t, env, "dlq", "show", "999"); r.code != cli.ExitFailure || !strings.Contains(r.stderr, "dead letter 999 not found") {
		t.Errorf("dlq show 999: exit %d: %s", r.code, r.stderr)
	}

	// replay one, then again
	if out := mustRun(t, env, "dlq", "replay", a1); !strings.Contains(out, "replayed dead letter "+a1) {
		t.Errorf("dlq replay: %s", out)
	}
	if r := run(t, env, "dlq", "replay", a1); r.code != cli.ExitFailure || !strings.Contains(r.stderr, "dead letter "+a1+" was already replayed at ") {
		t.Errorf("second dlq replay: exit %d: %s", r.code, r.stderr)
	}

	// replay --all with a filter
	if out := mustRun(t, env, "dlq", "replay", "--all", "--aggregate-id", "a2"); !strings.Contains(out, "replayed 1 dead letter\n") {
		t.Errorf("dlq replay --all --aggregate-id a2: %s", out)
	}

	// discard
	a3 := strconv.FormatInt(ids["a3"], 10)
	if out := mustRun(t, env, "dlq", "discard", a3, "--reason", "customer record deleted"); !strings.Contains(out, "discarded dead letter "+a3) {
		t.Errorf("dlq discard: %s", out)
	}
	if r := run(t, env, "dlq", "discard", "999", "--reason", "x"); r.code != cli.ExitFailure || !strings.Contains(r.stderr, "not found") {
		t.Errorf("dlq discard 999: exit %d: %s", r.code, r.stderr)
	}
	out = mustRun(t, env, "dlq", "show", a3)
	if !strings.Contains(out, "discarded") || !strings.Contains(out, "customer record deleted") {
		t.Errorf("dlq show of a discarded dead letter:\n%s", out)
	}

	// what is left
	states := map[string]string{}
	for _, d := range listJSON(t, env, "--state", "all") {
		states[d.AggregateID] = d.State
	}
	want := map[string]string{"a1": "replayed", "a2": "replayed", "a3": "discarded", "a4": "open"}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", states, want)
	}
	if got := listJSON(t, env); len(got) != 1 || got[0].AggregateID != "a4" {
		t.Errorf("open dead letters: %+v", got)
	}
	if got := listJSON(t, env, "--state", "replayed"); len(got) != 2 {
		t.Errorf("replayed dead letters: %+v", got)
	}

	var st struct {
		Pending       int64      `json:"pending"`
		DeadLetters   int64      `json:"dlq_size"`
		OldestPending *time.Time `json:"oldest_pending_at"`
		LagSeconds    float64    `json:"lag_seconds"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, env, "stats", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Pending != 2 || st.DeadLetters != 1 || st.OldestPending == nil || st.LagSeconds <= 0 {
		t.Errorf("stats --json after replaying two: %+v", st)
	}
	if out := mustRun(t, env, "stats"); !strings.Contains(out, "pending         2") {
		t.Errorf("stats after replaying two:\n%s", out)
	}
}

func TestDLQEmpty(t *testing.T) {
	t.Parallel()
	env := []string{"HERALD_DATABASE_URL=sqlite://" + filepath.Join(t.TempDir(), "herald.db")}
	mustRun(t, env, "migrate")
	if out := mustRun(t, env, "dlq", "list"); !strings.Contains(out, "no dead letters") {
		t.Errorf("dlq list on an empty queue: %s", out)
	}
	if out := mustRun(t, env, "dlq", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("dlq list --json on an empty queue: %s", out)
	}
	if out := mustRun(t, env, "dlq", "replay", "--all"); !strings.Contains(out, "replayed 0 dead letters") {
		t.Errorf("dlq replay --all on an empty queue: %s", out)
	}
}

func TestDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	r := run(t, []string{"HERALD_DATABASE_URL=postgres://nobody@127.0.0.1:1/none?connect_timeout=2"}, "stats")
	if r.code != cli.ExitFailure || !strings.Contains(r.stderr, "cannot connect to PostgreSQL") {
		t.Errorf("stats on an unreachable PostgreSQL: exit %d: %s", r.code, r.stderr)
	}
}
