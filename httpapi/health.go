package httpapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// openAPISource is the OpenAPI 3.1 document of every route.
//
//go:embed openapi.json
var openAPISource []byte

// openAPIDocument returns the document with info.version set to version
// (kept as written when empty).
func openAPIDocument(version string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openAPISource, &doc); err != nil {
		return nil, err
	}
	if info, ok := doc["info"].(map[string]any); ok && version != "" {
		info["version"] = version
	}
	return json.MarshalIndent(doc, "", "  ")
}

// OpenAPI returns the OpenAPI 3.1 document the API serves at /openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPISource...) }

func (s *server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.openapi)
}

// HealthResponse is the body of /healthz.
type HealthResponse struct {
	Status  string `json:"status"`
	Version string `json:"version,omitempty"`
}

// Check is one dependency that /readyz and the outbox's health report probe.
type Check struct {
	Name string // e.g. "database", "broker"
	// Required checks take the instance out of service when they fail:
	// /readyz answers 503. The others (the broker: the outbox absorbs its
	// outages) only show, in /readyz's body and the health report.
	Required bool
	Probe    func(ctx context.Context) error
}

// CheckResult is a Check's state. Why a check failed goes to the log only:
// /readyz is open to anyone who reaches the listener.
type CheckResult struct {
	Name     string `json:"name"`
	Status   string `json:"status"` // "up" or "down"
	Required bool   `json:"required"`
}

// ReadyResponse is the body of /readyz.
type ReadyResponse struct {
	Status  string        `json:"status"` // "ready" or "not_ready"
	Version string        `json:"version,omitempty"`
	Checks  []CheckResult `json:"checks"`
}

// handleHealthz serves GET /healthz: the process is up.
func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, HealthResponse{Status: "ok", Version: s.cfg.Version})
}

// runChecks probes every check at once, each within ReadyTimeout, and
// logs why a failing one failed.
func (s *server) runChecks(ctx context.Context) []CheckResult {
	out := make([]CheckResult, len(s.cfg.Checks))
	var wg sync.WaitGroup
	for i, c := range s.cfg.Checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
			defer cancel()
			out[i] = CheckResult{Name: c.Name, Status: "up", Required: c.Required}
			if err := c.Probe(cctx); err != nil {
				out[i].Status = "down"
				s.log.WarnContext(ctx, "http: dependency down", "dependency", c.Name, "error", err)
			}
		})
	}
	wg.Wait()
	return out
}

// handleReadyz serves GET /readyz: 200 while every required check passes,
// else 503; the body lists every check's state either way.
func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	resp := ReadyResponse{Status: "ready", Version: s.cfg.Version, Checks: s.runChecks(r.Context())}
	code := http.StatusOK
	for _, c := range resp.Checks {
		if c.Required && c.Status != "up" {
			resp.Status, code = "not_ready", http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "5")
		}
	}
	s.writeJSON(w, r, code, resp)
}

// OutboxHealthResponse is the body of GET /api/v1/outbox/health.
type OutboxHealthResponse struct {
	outbox.Health
	Checks []CheckResult `json:"checks"`
	Stats  StatsResponse `json:"stats"`
}

// handleOutboxHealth serves GET /api/v1/outbox/health: a verdict (ok,
// degraded, failing) with its reasons, from the outbox's figures, the
// in-process relay's recent attempts and the dependencies' checks.
func (s *server) handleOutboxHealth(w http.ResponseWriter, r *http.Request) {
	resp, err := s.outboxHealth(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, resp)
}

// outboxHealth is the health report, for the API and the web UI alike.
func (s *server) outboxHealth(ctx context.Context) (OutboxHealthResponse, error) {
	st, err := s.cfg.Outbox.Stats(ctx)
	if err != nil {
		return OutboxHealthResponse{}, err
	}
	now := time.Now()
	in := outbox.HealthInput{Stats: st, Now: now}
	if s.cfg.RelayCounters != nil {
		in.Relay = s.recent.relayHealth(s.cfg.RelayCounters(), now)
	}
	if s.cfg.Slot != nil {
		sl, err := s.cfg.Slot(ctx)
		if err != nil {
			return OutboxHealthResponse{}, err
		}
		in.Slot = sl
	}
	checks := s.runChecks(ctx)
	h := outbox.Assess(in, s.cfg.HealthThresholds)
	for _, c := range checks {
		if c.Status == "up" {
			continue
		}
		// Events do not flow without it, whatever else the verdict says.
		h.Reasons = append(h.Reasons, c.Name+" is unreachable")
		h.Verdict = outbox.HealthFailing
	}
	return OutboxHealthResponse{Health: h, Checks: checks, Stats: NewStats(st, now)}, nil
}

// recentWindow is how far back the health report's retry rate looks.
const recentWindow = 5 * time.Minute

// recentCounters keeps the relay's counters as the health report saw them,
// so that the retry rate is of recent attempts, not of the process's life.
type recentCounters struct {
	mu      sync.Mutex
	samples []counterSample
}

type counterSample struct {
	at time.Time
	c  outbox.RelayCounters
}

// relayHealth records c and returns the attempts since the oldest sample
// within the window (since the start, before there is one).
func (r *recentCounters) relayHealth(c outbox.RelayCounters, now time.Time) *outbox.RelayHealth {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Keep the newest sample older than the window as the base, so that a
	// report polled less often than the window still covers about one
	// window, not the process's whole life.
	for len(r.samples) > 1 && now.Sub(r.samples[1].at) > recentWindow {
		r.samples = r.samples[1:]
	}
	var base outbox.RelayCounters
	if len(r.samples) > 0 {
		base = r.samples[0].c
	}
	// One sample per few seconds is enough: a report polled in a loop
	// must not grow the list without bound.
	if n := len(r.samples); n == 0 || now.Sub(r.samples[n-1].at) >= recentWindow/30 {
		r.samples = append(r.samples, counterSample{at: now, c: c})
	}
	return &outbox.RelayHealth{
		Published:  c.Published - base.Published,
		Retried:    c.Retried - base.Retried,
		BrokerDown: c.BrokerDown,
	}
}
