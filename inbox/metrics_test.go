package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/inboxtest"
	"github.com/heraldhq/herald/inbox/sqliteinbox"
)

// The counters follow the outcomes, and the gap collector reports the
// aggregates held past its threshold.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d, err := sqliteinbox.Open(filepath.Join(t.TempDir(), "m.db"), sqliteinbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	m := inbox.NewMetrics("test")
	in := inbox.New(d, func(context.Context, *sql.Tx, inbox.Event) error { return nil }, inbox.Config{Metrics: m})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	reg.MustRegister(inbox.NewGapCollector(d, "test", 0), inbox.NewGapCollector(d, "later", time.Hour))

	e1, e3 := inboxtest.Event("a", 1), inboxtest.Event("a", 3)
	for _, ev := range []inbox.Event{e1, e1, e3, inboxtest.Event("a", 1), inboxtest.Event("b", 5)} {
		if _, err := in.Process(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Deliver(ctx, []byte(`{}`)); err == nil {
		t.Fatal("Deliver of an empty object: no error")
	}
	for name, want := range map[string]float64{
		`herald_inbox_events_total{inbox="test",outcome="applied"}`:   1,
		`herald_inbox_events_total{inbox="test",outcome="duplicate"}`: 1,
		`herald_inbox_events_total{inbox="test",outcome="failed"}`:    0,
		`herald_inbox_events_total{inbox="test",outcome="held"}`:      2,
		`herald_inbox_events_total{inbox="test",outcome="invalid"}`:   1,
		`herald_inbox_events_total{inbox="test",outcome="released"}`:  0,
		`herald_inbox_events_total{inbox="test",outcome="repeated"}`:  1,
		`herald_inbox_gap_aggregates{inbox="test"}`:                   2,
		`herald_inbox_gap_held_events{inbox="test"}`:                  2,
		`herald_inbox_gap_aggregates{inbox="later"}`:                  0,
		`herald_inbox_gap_held_events{inbox="later"}`:                 0,
	} {
		if got, ok := gather(t, reg)[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if n, err := in.SkipGap(ctx, "thing", "a"); err != nil || n != 1 {
		t.Fatalf("SkipGap = %d, %v", n, err)
	}
	if got := gather(t, reg)[`herald_inbox_events_total{inbox="test",outcome="released"}`]; got != 1 {
		t.Fatalf("released = %v after SkipGap, want 1", got)
	}
}

// gather returns the registry's samples by name{labels}, the labels in
// the order of their names.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}
