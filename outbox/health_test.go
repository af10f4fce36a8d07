package outbox_test

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
)

func TestAssess(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	th := outbox.HealthThresholds{}
	tests := []struct {
		name    string
		in      outbox.HealthInput
		verdict string
		reasons []string
	}{
		{"empty outbox", outbox.HealthInput{Now: now}, outbox.HealthOK, nil},
		{"a short lag", outbox.HealthInput{Now: now, Stats: outbox.Stats{Pending: 3, OldestPending: now.Add(-time.Minute)}}, outbox.HealthOK, nil},
		{"lag over five minutes", outbox.HealthInput{Now: now, Stats: outbox.Stats{Pending: 3, OldestPending: now.Add(-6 * time.Minute)}},
			outbox.HealthFailing, []string{"6m0s old (over 5m0s)"}},
		{"101 dead letters", outbox.HealthInput{Now: now, Stats: outbox.Stats{DeadLetters: 101}}, outbox.HealthDegraded, []string{"101 open dead letters"}},
		{"one event parked", outbox.HealthInput{Now: now, Stats: outbox.Stats{Pending: 1, DeadLetters: 1, Parked: 1, OldestPending: now}},
			outbox.HealthDegraded, []string{"1 pending event parked behind open dead letters"}},
		{"events parked", outbox.HealthInput{Now: now, Stats: outbox.Stats{Pending: 9, DeadLetters: 2, Parked: 7, OldestPending: now}},
			outbox.HealthDegraded, []string{"7 pending events parked"}},
		{"dead letters, nothing parked", outbox.HealthInput{Now: now, Stats: outbox.Stats{DeadLetters: 2}}, outbox.HealthOK, nil},
		{"100 dead letters", outbox.HealthInput{Now: now, Stats: outbox.Stats{DeadLetters: 100}}, outbox.HealthOK, nil},
		{"broker down", outbox.HealthInput{Now: now, Relay: &outbox.RelayHealth{BrokerDown: true}}, outbox.HealthFailing, []string{"broker is unavailable"}},
		{"retry rate over half", outbox.HealthInput{Now: now, Relay: &outbox.RelayHealth{Published: 10, Retried: 30}},
			outbox.HealthDegraded, []string{"75% of 40 recent publish attempts failed"}},
		{"too few attempts to judge", outbox.HealthInput{Now: now, Relay: &outbox.RelayHealth{Published: 1, Retried: 5}}, outbox.HealthOK, nil},
		{"degraded then failing stays failing", outbox.HealthInput{Now: now, Stats: outbox.Stats{DeadLetters: 500},
			Relay: &outbox.RelayHealth{BrokerDown: true}}, outbox.HealthFailing, []string{"broker", "500 open dead letters"}},
	}
	for _, tt := range tests {
		h := outbox.Assess(tt.in, th)
		if h.Verdict != tt.verdict || len(h.Reasons) != len(tt.reasons) {
			t.Errorf("%s: %+v, want %s with %d reasons", tt.name, h, tt.verdict, len(tt.reasons))
			continue
		}
		for i, want := range tt.reasons {
			if !strings.Contains(h.Reasons[i], want) {
				t.Errorf("%s: reason %q lacks %q", tt.name, h.Reasons[i], want)
			}
		}
	}
	// Thresholds are settable.
	if h := outbox.Assess(outbox.HealthInput{Now: now, Stats: outbox.Stats{DeadLetters: 5}}, outbox.HealthThresholds{DeadLetters: 4}); h.Verdict != outbox.HealthDegraded {
		t.Errorf("DeadLetters threshold 4 with 5: %+v", h)
	}
}
