package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testdb"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(ChildEnv); spec != "" {
		// A relay process of TestRelayModeProcesses: this test binary,
		// re-run by the bench as herald would be.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := RunRelayChild(ctx, spec, os.Stdin, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// natsURL is the machine's NATS server: $HERALD_TEST_NATS_URL or the
// standard port.
func natsURL() string {
	if u := os.Getenv("HERALD_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// backend is a database and broker pair every mode runs on.
type backend struct {
	name           string
	dbURL, broker  string
	embeddedBroker bool
}

func backends() []backend {
	return []backend{
		{name: "sqlite+embedded", broker: "embedded", embeddedBroker: true},
		{name: "postgres+nats", dbURL: testdb.PostgresURL(), broker: natsURL()},
	}
}

func (b backend) config(mode Mode) Config {
	return Config{
		Mode:        mode,
		App:         app.Config{DatabaseURL: b.dbURL, BrokerURL: b.broker},
		FreshSchema: true,
		Verify:      true,
	}
}

func run(t *testing.T, cfg Config) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := res.WriteSummary(&sb); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&sb, res); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + sb.String())
	if err := res.Failure(); err != nil {
		t.Fatal(err)
	}
	return res
}

// jsonLine decodes r's JSON line into a map.
func jsonLine(t *testing.T, r Result) map[string]any {
	t.Helper()
	var sb strings.Builder
	if err := WriteJSON(&sb, r); err != nil {
		t.Fatal(err)
	}
	if strings.Count(sb.String(), "\n") != 1 {
		t.Fatalf("not one line: %q", sb.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(sb.String()), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRelayMode(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := b.config(ModeRelay)
			cfg.Events = 2000
			res := run(t, cfg).(*DrainResult)
			if len(res.Runs) != 1 {
				t.Fatalf("%d runs", len(res.Runs))
			}
			r := res.Runs[0]
			if r.Published != 2000 || r.Aggregates != 200 || r.EventsPerSec <= 0 || r.RSSPeakMiB <= 0 {
				t.Errorf("run %+v", r)
			}
			if v := r.Verify; v == nil || v.Received != 2000 || v.Expected != 2000 || !v.OK() || v.Duplicates != 0 {
				t.Errorf("verify %+v", r.Verify)
			}
			m := jsonLine(t, res)
			if m["events"] != 2000.0 || m["lost"] != 0.0 || m["reordered"] != 0.0 {
				t.Errorf("json %v", m)
			}
		})
	}
}

// Several relay processes drain one backlog together: every event once, in
// order per aggregate.
func TestRelayModeProcesses(t *testing.T) {
	t.Parallel()
	b := backends()[1]
	cfg := b.config(ModeRelay)
	cfg.Events, cfg.Aggregates, cfg.Processes = 3000, 100, 3
	cfg.App.Relay.BatchSize = 50
	res := run(t, cfg).(*DrainResult)
	r := res.Runs[0]
	if r.Published != 3000 || r.Processes != 3 || r.RSSProcessMiB <= 0 {
		t.Errorf("run %+v", r)
	}
	if v := r.Verify; v == nil || v.Received != 3000 || !v.OK() || v.Reordered != 0 {
		t.Errorf("verify %+v", r.Verify)
	}
	cfg.App.BrokerURL = "embedded"
	cfg.App.DatabaseURL = ""
	if _, err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("--processes on SQLite: %v, want an error naming PostgreSQL", err)
	}
}

func TestCompareMode(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := b.config(ModeCompare)
			cfg.Events, cfg.Aggregates = 1500, 300 // 5 events each: several claim rounds
			cfg.App.Relay.Workers = 2
			res := run(t, cfg).(*DrainResult)
			if len(res.Runs) != 2 || res.Runs[0].Kind != "baseline" || res.Runs[1].Kind != "relay" {
				t.Fatalf("runs %+v", res.Runs)
			}
			for _, r := range res.Runs {
				if r.Published != 1500 || r.Verify == nil || r.Verify.Received != 1500 || r.Verify.Lost != 0 {
					t.Errorf("%s: %+v verify %+v", r.Kind, r, r.Verify)
				}
			}
			if m := jsonLine(t, res); m["relay_baseline_ratio"] == nil || m["events"] != 3000.0 {
				t.Errorf("json %v", m)
			}
		})
	}
}

func TestLatencyMode(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := b.config(ModeLatency)
			cfg.Rate, cfg.Duration, cfg.Warmup, cfg.Clients = 200, time.Second, 200*time.Millisecond, 4
			res := run(t, cfg).(*LatencyResult)
			if res.Events != 200 || res.Verify.Received != 200 || res.Verify.Aggregates != 200 {
				t.Errorf("events %d, verify %+v", res.Events, res.Verify)
			}
			if res.E2E.N == 0 || res.Ack.N == 0 || res.E2E.N > 200 || res.E2E.P50 > res.E2E.Max {
				t.Errorf("latencies: ack %v, e2e %v", res.Ack, res.E2E)
			}
		})
	}
}

func TestEnqueueMode(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := b.config(ModeEnqueue)
			cfg.Duration, cfg.Clients = 500*time.Millisecond, 4
			res := run(t, cfg).(*EnqueueResult)
			want := 3 // outbox, hand_insert, outbox_counter
			if b.dbURL != "" {
				want = 5 // and outbox_notify_in_tx, outbox_no_notify
			}
			if len(res.Variants) != want {
				t.Fatalf("variants %+v", res.Variants)
			}
			// 500ms is under enqueueMinRounds slices of enqueueSlice: the minimum.
			if res.Rounds != enqueueMinRounds || res.Slice != cfg.Duration/enqueueMinRounds {
				t.Errorf("%d rounds of %s", res.Rounds, res.Slice)
			}
			for _, v := range res.Variants {
				if v.Tx == 0 || v.TxPerSec <= 0 || v.Errors != 0 {
					t.Errorf("variant %+v", v)
				}
				// The rounds add up to the variant's totals.
				var tx int64
				for _, r := range v.Rounds {
					tx += r.Tx
				}
				if len(v.Rounds) != res.Rounds || tx != v.Tx {
					t.Errorf("%s: %d rounds with %d transactions, want %d rounds with %d", v.Name, len(v.Rounds), tx, res.Rounds, v.Tx)
				}
				o := v.EnqueueOverhead
				if (o == nil) != (v.Name == variantHand) {
					t.Errorf("%s: overhead %+v", v.Name, o)
					continue
				}
				if o == nil {
					continue
				}
				// A figure per round with transactions on both sides: all of
				// them but on a machine so loaded that a 100ms slice passed
				// before a client started.
				if len(o.RoundPct) == 0 || len(o.RoundPct) > res.Rounds || o.P25Pct > o.MedianPct || o.MedianPct > o.P75Pct ||
					o.P25Pct < slices.Min(o.RoundPct) || o.P75Pct > slices.Max(o.RoundPct) {
					t.Errorf("%s: overhead %+v", v.Name, o)
				}
			}
			m := jsonLine(t, res)
			for _, k := range []string{"overhead_pct", "overhead_median_pct", "overhead_p25_pct", "overhead_p75_pct", "hand_tx_per_sec", "rounds"} {
				if _, ok := m[k]; !ok {
					t.Errorf("JSON line lacks %q: %v", k, m)
				}
			}
			if m["rounds"] != float64(res.Rounds) {
				t.Errorf("json rounds %v", m["rounds"])
			}
			// The headline is the summary's first line: numbered by the caller.
			if m["overhead_pct"] != res.variant(variantOutbox).Pct || m["overhead_counter_pct"] != res.variant(variantOutboxCounter).Pct {
				t.Errorf("json overhead_pct %v, overhead_counter_pct %v", m["overhead_pct"], m["overhead_counter_pct"])
			}
			for _, jv := range m["variants"].([]any) {
				jv := jv.(map[string]any)
				_, has := jv["overhead_median_pct"]
				if rounds, _ := jv["rounds"].([]any); len(rounds) != res.Rounds || has != (jv["name"] != variantHand) {
					t.Errorf("json variant %v", jv)
				}
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	for _, c := range []struct {
		xs      []float64
		q, want float64
	}{
		{nil, 0.5, 0},
		{[]float64{3}, 0.25, 3},
		{[]float64{1, 2, 3, 4, 5}, 0.5, 3},
		{[]float64{1, 2, 3, 4, 5}, 0.25, 2},
		{[]float64{1, 2, 3, 4}, 0.5, 2.5},
		{[]float64{1, 2, 3, 4}, 0.75, 3.25},
	} {
		if got := quantile(c.xs, c.q); got != c.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", c.xs, c.q, got, c.want)
		}
	}
}

func checkFull(t *testing.T, res *FullResult, orders int64) {
	t.Helper()
	if res.Orders != orders || res.Errors != 0 || res.Mismatches != 0 || res.Unverified != 0 {
		t.Errorf("orders %d (want %d), errors %d %v, mismatches %d, unverified %d",
			res.Orders, orders, res.Errors, res.ErrorKinds, res.Mismatches, res.Unverified)
	}
	v := res.Verify
	if v.Aggregates != int(orders) || v.Received != v.Expected || v.Expected < orders {
		t.Errorf("verify %+v", v)
	}
	if res.E2E.N != int(v.Received) || res.API.N != int(res.Requests) {
		t.Errorf("%d e2e samples for %d events, %d API samples for %d requests", res.E2E.N, v.Received, res.API.N, res.Requests)
	}
	m := jsonLine(t, res)
	for _, k := range []string{"orders", "events", "api_p50_ms", "api_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "events_per_sec", "lost", "reordered", "duplicates"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON line lacks %q: %v", k, m)
		}
	}
	if m["orders"] != float64(orders) || m["events"] != float64(v.Received) {
		t.Errorf("json %v", m)
	}
}

func TestFullMode(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := b.config(ModeFull)
			cfg.Orders, cfg.Concurrency, cfg.Seed = 40, 4, 7
			res := run(t, cfg).(*FullResult)
			checkFull(t, res, 40)
			// A lifecycle has payment and transitions: more events than orders.
			if res.Verify.Expected < 3*40 || len(res.PerKind) < 3 {
				t.Errorf("expected %d events, request kinds %v", res.Verify.Expected, res.PerKind)
			}
		})
	}
}

func TestFullModeCreateOnlyPaced(t *testing.T) {
	t.Parallel()
	cfg := backends()[0].config(ModeFull)
	cfg.Workload, cfg.Orders, cfg.Concurrency, cfg.Rate = WorkloadCreate, 30, 3, 300
	res := run(t, cfg).(*FullResult)
	checkFull(t, res, 30)
	if res.Verify.Expected != 30 || res.Requests != 30 {
		t.Errorf("expected %d events for %d requests", res.Verify.Expected, res.Requests)
	}
	// 30 requests at 300/s take at least the 29 intervals between them.
	if res.Duration < 29*time.Second/300 {
		t.Errorf("30 paced requests took %s", res.Duration)
	}
}

// TestFullModeAgainstURL drives a Herald the bench did not start.
func TestFullModeAgainstURL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := backends()[0].config(ModeFull).withDefaults()
	tg, err := openTarget(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	cfg.URL = tg.url
	cfg.App.EmbeddedNATSAddr = strings.TrimPrefix(tg.ep.natsURL, "nats://")
	cfg.Orders, cfg.Concurrency = 20, 2
	res := run(t, cfg).(*FullResult)
	checkFull(t, res, 20)
	if res.Database != "remote" {
		t.Errorf("database %q", res.Database)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Mode: "nope"},
		{Mode: ModeFull, Workload: "nope"},
		{Mode: ModeRelay, Workload: WorkloadLifecycle, URL: "http://127.0.0.1:1"},
		{Mode: ModeRelay, Workload: WorkloadLifecycle, Events: 10, Aggregates: 11},
		{Mode: ModeFull, Workload: WorkloadLifecycle, App: app.Config{BrokerURL: "log"}},
		{Mode: ModeFull, Workload: WorkloadLifecycle, Rate: -1},
	} {
		if err := cfg.Validate(); !app.IsUsageError(err) {
			t.Errorf("%+v: %v, want a usage error", cfg, err)
		}
	}
}
