package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/order"
)

// promtool checks and unit-tests the alert rules in deploy/prometheus.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed to check deploy/prometheus (Debian: apt-get install prometheus): %v", err)
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"test", "rules", "alerts_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../deploy/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// createOrderPublished creates an order through a's service and waits
// until the log broker has written its event to events.
func createOrderPublished(t *testing.T, a *app.App, events *lockedBuffer) {
	t.Helper()
	o, err := a.DB.Orders.CreateOrder(context.Background(), order.CreateOrder{CustomerID: "c", Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 5}}},
		order.RequestOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(events.String(), o.ID.String()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the order's event was not published")
		}
	}
}

var metricName = regexp.MustCompile(`\bherald_[a-z_]+\b`)

// Every metric the alert rules and the Grafana dashboard query is one that
// /metrics really exposes, and /metrics has the build and per-type series.
func TestDeployQueriesNameExposedMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	events := &lockedBuffer{}
	cfg := testConfig(t, events)
	cfg.Version = "v9.9.9-test"
	a, err := app.Start(ctx, cfg, app.Options{HTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	// One request and one published event, so that every series exists.
	createOrderPublished(t, a, events)
	get := func(path string) string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	get("/healthz") // a request the HTTP counter counts
	// The relay counts an event once its batch is committed, a moment
	// after the broker has it.
	body := get("/metrics")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(body, `outcome="published"} 1`); body = get("/metrics") {
		if time.Now().After(deadline) {
			t.Fatalf("the published event is not counted by type:\n%s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	exposed := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if name := metricName.FindString(line); name != "" && !strings.HasPrefix(line, "#") {
			exposed[name] = true
		}
	}
	for _, want := range []string{
		`herald_build_info{goversion="`, `version="v9.9.9-test"} 1`,
		`herald_relay_events_total{event_type="order.created",outcome="published"} 1`,
		`herald_relay_broker_up 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	var queried []string
	rules, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		queried = append(queried, metricName.FindAllString(line, -1)...)
	}
	raw, err := os.ReadFile("../../deploy/grafana/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %q names no herald metric", p.Title, tg.Expr)
			}
			queried = append(queried, names...)
		}
	}
	if len(queried) == 0 {
		t.Fatal("no metric found in the rules and the dashboard")
	}
	for _, name := range queried {
		if strings.HasPrefix(name, "herald_cdc_") {
			continue // only in --mode cdc: TestServeCDC checks them
		}
		if !exposed[name] {
			t.Errorf("%s is queried by deploy/ but /metrics does not expose it", name)
		}
	}
}
