package cli_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/order"
)

// herald stats gives the health verdict the database supports, with its
// reasons; the thresholds are settings (--health-max-lag here).
func TestStatsHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "h.db")
	env := []string{"HERALD_DATABASE_URL=" + dbURL}
	mustRun(t, env, "migrate")
	if out := mustRun(t, env, "stats"); !strings.Contains(out, "health          ok") {
		t.Fatalf("an empty outbox:\n%s", out)
	}
	db, err := app.OpenDatabase(ctx, app.Config{DatabaseURL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.Orders.CreateOrder(ctx, order.CreateOrder{CustomerID: "c", Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 5}}},
		order.RequestOptions{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the event is older than the threshold below
	out := mustRun(t, append(env, "HERALD_HEALTH_MAX_LAG=1ms"), "stats", "--json")
	var st struct {
		Pending int64 `json:"pending"`
		Health  struct {
			Verdict string   `json:"verdict"`
			Reasons []string `json:"reasons"`
		} `json:"health"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, out)
	}
	if st.Pending != 1 || st.Health.Verdict != "failing" || len(st.Health.Reasons) != 1 || !strings.Contains(st.Health.Reasons[0], "oldest pending event") {
		t.Fatalf("stats with an event older than --health-max-lag: %+v", st)
	}
}

// Thresholds out of range are refused before anything starts (exit 2).
func TestHealthThresholdsValidated(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"stats", "--health-max-lag", "-1s"},
		{"stats", "--health-max-dead-letters", "-3"},
		{"serve", "--health-max-retry-rate", "1.5"},
		{"serve", "--health-max-retry-rate", "NaN"},
	} {
		if r := run(t, nil, args...); r.code != 2 || !strings.Contains(r.stderr, args[1]) {
			t.Errorf("herald %v: exit %d, want 2 naming %s\n%s", args, r.code, args[1], r.stderr)
		}
	}
}
