package bench

import (
	"strings"
	"testing"
	"time"
)

// The cdc mode runs each part it is asked for, on each relay and each
// write style, and refuses an unknown part.
func TestCDCMode(t *testing.T) {
	t.Parallel()
	cfg := backends()[1].config(ModeCDC)
	cfg.Events, cfg.Clients, cfg.Duration, cfg.Rate = 400, 2, time.Second, 200
	cfg.Parts = []string{"drain", "latency"}
	res := run(t, cfg).(*CDCResult)
	var got []string
	for _, r := range res.Runs {
		got = append(got, r.Part+" "+r.Kind)
		if r.Events <= 0 || r.EventsPerSec <= 0 || r.Part == "drain" && r.Events != 400 {
			t.Errorf("run %+v", r)
		}
	}
	want := "drain poll, drain cdc, drain cdc-msg, latency poll, latency cdc, latency cdc-msg"
	if strings.Join(got, ", ") != want {
		t.Errorf("runs %s, want %s", strings.Join(got, ", "), want)
	}
	m := jsonLine(t, res)
	for _, key := range []string{"drain_ratio_cdc_over_poll", "drain_ratio_cdc_msg_over_poll"} {
		if v, ok := m[key].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v in %v", key, m[key], m)
		}
	}
	cfg.Parts = []string{"write", "speed"}
	if _, err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), `unknown part "speed"`) {
		t.Errorf("--parts speed: %v", err)
	}
}
