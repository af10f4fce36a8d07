package app_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/app"
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
