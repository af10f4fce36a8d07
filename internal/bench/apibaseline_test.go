package bench

import (
	"testing"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testdb"
)

// With one client and one seed, the raw transactions and the API make the
// same requests and write the same events: the baseline does the API's
// work, no less.
func TestAPICompareMode(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Mode:        ModeAPICompare,
		App:         app.Config{DatabaseURL: testdb.PostgresURL(), BrokerURL: natsURL()},
		FreshSchema: true,
		Orders:      20,
		Concurrency: 1,
		Seed:        11,
		Repeat:      1,
	}
	res := run(t, cfg).(*APICompareResult)
	if len(res.Pairs) != 1 {
		t.Fatalf("%d pairs, want 1", len(res.Pairs))
	}
	raw, api := res.Pairs[0].Raw, res.Pairs[0].API
	checkFull(t, api, 20)
	if raw.Orders != 20 || raw.Errors != 0 || !raw.Relayed || raw.Verify.Received != raw.Events || raw.E2E.N != int(raw.Events) {
		t.Errorf("raw: %d orders, %d errors %v, relayed %v, %d events, verify %+v, %d e2e samples",
			raw.Orders, raw.Errors, raw.ErrorKinds, raw.Relayed, raw.Events, raw.Verify, raw.E2E.N)
	}
	if raw.Requests != api.Requests || raw.Events != api.Verify.Received {
		t.Errorf("raw: %d requests, %d events; API: %d requests, %d events", raw.Requests, raw.Events, api.Requests, api.Verify.Received)
	}
	for _, k := range requestKinds {
		if raw.PerKind[k].N != api.PerKind[k].N {
			t.Errorf("%s: raw %d, API %d", k, raw.PerKind[k].N, api.PerKind[k].N)
		}
	}
	m := jsonLine(t, res)
	for _, k := range []string{"raw_requests_per_sec", "api_requests_per_sec", "ratio", "pairs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON line lacks %q: %v", k, m)
		}
	}
}

// Without the relay, the rows are counted in the outbox.
func TestAPIBaselineModeNoRelay(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Mode:        ModeAPIBaseline,
		App:         app.Config{DatabaseURL: testdb.PostgresURL()},
		FreshSchema: true,
		NoRelay:     true,
		Orders:      40,
		Concurrency: 4,
	}
	res := run(t, cfg).(*APIBaselineResult)
	if res.Orders != 40 || res.Events < 3*40 || len(res.PerKind) < 3 {
		t.Errorf("%d orders, %d events, request kinds %v", res.Orders, res.Events, res.PerKind)
	}
	m := jsonLine(t, res)
	if m["mode"] != string(ModeAPIBaseline) || m["outbox_rows"] != float64(res.Events) {
		t.Errorf("json %v", m)
	}
}

func TestAPIModesNeedPostgres(t *testing.T) {
	t.Parallel()
	for _, mode := range []Mode{ModeAPIBaseline, ModeAPICompare} {
		for _, db := range []string{"", "sqlite:///tmp/x.db"} {
			cfg := Config{Mode: mode, App: app.Config{DatabaseURL: db}}
			if err := cfg.Validate(); !app.IsUsageError(err) {
				t.Errorf("%s on %q: %v, want a usage error", mode, db, err)
			}
		}
	}
}
