package app_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/jackc/pgx/v5"
)

func TestValidateRelayMode(t *testing.T) {
	t.Parallel()
	pg := "postgres://postgres@127.0.0.1:5432/test"
	tests := []struct {
		cfg  app.Config
		want string // "" when valid
	}{
		{app.Config{}, ""},
		{app.Config{RelayMode: app.RelayModePoll}, ""},
		{app.Config{RelayMode: app.RelayModeCDC, DatabaseURL: pg}, ""},
		{app.Config{RelayMode: app.RelayModeCDC, DatabaseURL: pg, DeleteInTx: true, CDCSlot: "herald_a1"}, ""},
		{app.Config{RelayMode: "wal"}, "--mode must be poll or cdc"},
		{app.Config{RelayMode: app.RelayModeCDC}, "needs PostgreSQL"},
		{app.Config{DeleteInTx: true, DatabaseURL: pg}, "--delete-in-tx needs --mode cdc"},
		{app.Config{RelayMode: app.RelayModeCDC, DatabaseURL: pg, WALMessages: true}, ""},
		{app.Config{WALMessages: true, DatabaseURL: pg}, "--wal-messages needs --mode cdc"},
		{app.Config{RelayMode: app.RelayModeCDC, DatabaseURL: pg, WALMessages: true, DeleteInTx: true}, "exclude each other"},
		{app.Config{RelayMode: app.RelayModeCDC, DatabaseURL: pg, CDCSlot: "Herald-1"}, "--cdc-slot"},
		{app.Config{RelayMode: app.RelayModeCDC, DatabaseURL: pg, CDCSlot: "1herald"}, "--cdc-slot"},
	}
	for _, tt := range tests {
		err := tt.cfg.ValidateRelayMode()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !app.IsUsageError(err)):
			t.Errorf("%+v: got %v, want a usage error with %q", tt.cfg, err, tt.want)
		}
	}
}

// herald serve --mode cdc, with each way of writing events that only the
// log holds: an order's event reaches the broker, /metrics reports the
// slot (the series the alert rules in deploy/prometheus query among
// them), and the outbox table stays empty.
func TestServeCDC(t *testing.T) {
	t.Parallel()
	for _, w := range []struct {
		name                    string
		deleteInTx, walMessages bool
	}{{"delete-in-tx", true, false}, {"wal-messages", false, true}} {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			events := &lockedBuffer{}
			cfg := testConfig(t, events)
			url, schema := testdb.PostgresSchema(t)
			slot := "herald_test_" + schema
			cfg.DatabaseURL, cfg.RelayMode, cfg.CDCSlot = url, app.RelayModeCDC, slot
			cfg.DeleteInTx, cfg.WALMessages = w.deleteInTx, w.walMessages
			a, err := app.Start(ctx, cfg, app.Options{HTTP: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = a.Shutdown(context.Background())
				testdb.DropSlot(t, slot)
			})
			createOrderPublished(t, a, events)
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close(ctx) }()
			var rows int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM order_outbox").Scan(&rows); err != nil || rows != 0 {
				t.Fatalf("%d rows in the outbox table (%v)", rows, err)
			}
			_, body := get(t, http.DefaultClient, a.URL()+"/metrics")
			for _, want := range []string{`herald_cdc_slot_active{slot="` + slot + `"} 1`, `herald_cdc_slot_lag_bytes{slot="` + slot + `"}`} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			rules, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range metricName.FindAllString(string(rules), -1) {
				if strings.HasPrefix(name, "herald_cdc_") && !strings.Contains(body, name+"{") {
					t.Errorf("%s is queried by deploy/prometheus but /metrics in CDC mode does not expose it", name)
				}
			}
		})
	}
}
