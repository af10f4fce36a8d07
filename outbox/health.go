package outbox

import (
	"fmt"
	"time"
)

// Health verdicts, from best to worst.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded" // events flow, but something needs an operator
	HealthFailing  = "failing"  // events do not flow
)

// HealthThresholds are the limits of a healthy outbox. Zero fields take the
// defaults below, the alerts an outbox's operators usually want.
type HealthThresholds struct {
	Lag         time.Duration // age of the oldest pending event; default 5m
	DeadLetters int64         // open dead letters; default 100
	RetryRate   float64       // share of recent publish attempts that failed; default 0.5
	// MinAttempts is how many recent attempts the retry rate needs before it
	// means anything; default 20.
	MinAttempts uint64
	// SlotLagBytes is the most write-ahead log a change-data-capture
	// relay's replication slot may hold back before the verdict is
	// degraded; default 1 GiB. (Its lag in time is judged against Lag.)
	SlotLagBytes int64
}

// WithDefaults returns t with every zero field set to its default.
func (t HealthThresholds) WithDefaults() HealthThresholds {
	if t.Lag <= 0 {
		t.Lag = 5 * time.Minute
	}
	if t.DeadLetters <= 0 {
		t.DeadLetters = 100
	}
	if t.RetryRate <= 0 {
		t.RetryRate = 0.5
	}
	if t.MinAttempts == 0 {
		t.MinAttempts = 20
	}
	if t.SlotLagBytes <= 0 {
		t.SlotLagBytes = 1 << 30
	}
	return t
}

// HealthInput is what Assess judges.
type HealthInput struct {
	Stats Stats
	Now   time.Time
	// Relay is set when a relay runs in this process: its recent publish
	// attempts (published and retried in the window the caller keeps) and
	// whether it finds the broker unavailable.
	Relay *RelayHealth
	// Slot is set when the relay reads the write-ahead log through a
	// replication slot (change data capture): how far behind it is.
	Slot *SlotHealth
}

// SlotHealth is a replication slot's state, for Assess.
type SlotHealth struct {
	Name     string
	LagBytes int64         // write-ahead log the server keeps for the slot
	Lag      time.Duration // age of the oldest transaction read and not finished
	Active   bool          // a relay streams the slot
}

// RelayHealth is a relay's recent activity, for Assess.
type RelayHealth struct {
	Published, Retried uint64 // in the recent window
	BrokerDown         bool
}

// Health is a verdict with the reasons for it (none when ok).
type Health struct {
	Verdict string   `json:"verdict"`
	Reasons []string `json:"reasons"`
}

// Assess judges an outbox: failing when events do not flow (the broker is
// unavailable, or the oldest pending event is older than th.Lag), degraded
// when an operator is needed (too many open dead letters, events parked
// behind a dead letter, too many recent attempts failing), ok otherwise.
func Assess(in HealthInput, th HealthThresholds) Health {
	th = th.WithDefaults()
	h := Health{Verdict: HealthOK, Reasons: []string{}}
	worse := func(verdict, reason string) {
		if verdict == HealthFailing || h.Verdict == HealthOK {
			h.Verdict = verdict
		}
		h.Reasons = append(h.Reasons, reason)
	}
	if in.Relay != nil && in.Relay.BrokerDown {
		worse(HealthFailing, "the broker is unavailable: events wait in the outbox")
	}
	if !in.Stats.OldestPending.IsZero() {
		if lag := in.Now.Sub(in.Stats.OldestPending); lag > th.Lag {
			worse(HealthFailing, fmt.Sprintf("the oldest pending event is %s old (over %s)", lag.Round(time.Second), th.Lag))
		}
	}
	if in.Stats.DeadLetters > th.DeadLetters {
		worse(HealthDegraded, fmt.Sprintf("%d open dead letters (over %d)", in.Stats.DeadLetters, th.DeadLetters))
	}
	if in.Stats.Parked > 0 {
		what := fmt.Sprintf("%d pending events", in.Stats.Parked)
		if in.Stats.Parked == 1 {
			what = "1 pending event"
		}
		worse(HealthDegraded, what+" parked behind open dead letters: replay or discard them")
	}
	if sl := in.Slot; sl != nil {
		if !sl.Active {
			worse(HealthDegraded, fmt.Sprintf("no relay streams the replication slot %s: PostgreSQL keeps write-ahead log for it (%d bytes)", sl.Name, sl.LagBytes))
		}
		if sl.Lag > th.Lag {
			worse(HealthFailing, fmt.Sprintf("the replication slot %s is %s behind (over %s)", sl.Name, sl.Lag.Round(time.Second), th.Lag))
		}
		if sl.LagBytes > th.SlotLagBytes {
			worse(HealthDegraded, fmt.Sprintf("the replication slot %s holds %d bytes of write-ahead log (over %d)", sl.Name, sl.LagBytes, th.SlotLagBytes))
		}
	}
	if in.Relay != nil {
		attempts := in.Relay.Published + in.Relay.Retried
		if attempts >= th.MinAttempts {
			if rate := float64(in.Relay.Retried) / float64(attempts); rate > th.RetryRate {
				worse(HealthDegraded, fmt.Sprintf("%.0f%% of %d recent publish attempts failed (over %.0f%%)", 100*rate, attempts, 100*th.RetryRate))
			}
		}
	}
	return h
}
