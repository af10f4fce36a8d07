package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"text/tabwriter"
	"time"
)

// APIComparePair is one api-baseline run and the full-mode run after it,
// with the same workload, seed, clients and duration.
type APIComparePair struct {
	Raw *APIBaselineResult
	API *FullResult
}

// Ratio is the API's request rate over the raw transactions'.
func (p APIComparePair) Ratio() float64 {
	raw := p.Raw.RequestsPerSec()
	if raw <= 0 {
		return 0
	}
	return fullRate(p.API) / raw
}

// fullRate is the full mode's rate of answered requests.
func fullRate(r *FullResult) float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Duration.Seconds()
}

// APICompareResult is the result of the api-compare mode.
type APICompareResult struct {
	Pairs []APIComparePair
	Seed  uint64
}

// runAPICompare runs --repeat pairs of api-baseline then full, each on a
// fresh schema, one after the other, and compares their request rates.
func runAPICompare(ctx context.Context, cfg Config) (*APICompareResult, error) {
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64() //nolint:gosec // a workload's seed, not a secret
	}
	res := &APICompareResult{Seed: cfg.Seed}
	for i := range cfg.Repeat {
		if i > 0 {
			sleepUntil(ctx, time.Now().Add(apiCompareSettle))
		}
		raw, err := runAPIBaseline(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if err := raw.Failure(); err != nil {
			return nil, fmt.Errorf("bench: api-baseline: %w", err)
		}
		sleepUntil(ctx, time.Now().Add(apiCompareSettle))
		api, err := runFull(ctx, cfg)
		if err != nil {
			return nil, err
		}
		res.Pairs = append(res.Pairs, APIComparePair{Raw: raw, API: api})
	}
	return res, nil
}

// medians returns the median raw rate, API rate and ratio of the pairs.
func (r *APICompareResult) medians() (raw, api, ratio float64) {
	var rs, as, qs []float64
	for _, p := range r.Pairs {
		rs, as, qs = append(rs, p.Raw.RequestsPerSec()), append(as, fullRate(p.API)), append(qs, p.Ratio())
	}
	med := func(x []float64) float64 { return quantile(slices.Sorted(slices.Values(x)), 0.5) }
	return med(rs), med(as), med(qs)
}

// WriteSummary writes each pair and the medians.
func (r *APICompareResult) WriteSummary(w io.Writer) error {
	if len(r.Pairs) == 0 {
		_, err := fmt.Fprintln(w, "herald bench --mode api-compare: no pairs ran")
		return err
	}
	first := r.Pairs[0]
	if _, err := fmt.Fprintf(w, "herald bench --mode api-compare: %s → %s, workload %s, %d clients, seed %d; raw pgx transactions, then the HTTP API (full mode)\n",
		first.API.Database, first.API.Broker, first.API.Workload, first.API.Concurrency, r.Seed); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "pair\traw req/s\tp50 ms\tp99 ms\te2e p50\te2e p99\tAPI req/s\tp50 ms\tp99 ms\te2e p50\te2e p99\tAPI/raw\tload1\t")
	for i, p := range r.Pairs {
		_, _ = fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t%.2f/%.2f\t\n", i+1,
			p.Raw.RequestsPerSec(), ms(p.Raw.Tx.P50), ms(p.Raw.Tx.P99), ms(p.Raw.E2E.P50), ms(p.Raw.E2E.P99),
			fullRate(p.API), ms(p.API.API.P50), ms(p.API.API.P99), ms(p.API.E2E.P50), ms(p.API.E2E.P99),
			p.Ratio(), p.Raw.Load.One, p.API.Load.One)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	raw, api, ratio := r.medians()
	_, err := fmt.Fprintf(w, "median: raw %.0f requests/s, API %.0f requests/s, API/raw %.3f (median of the pairs' ratios)\n", raw, api, ratio)
	return err
}

// JSON returns the result's line.
func (r *APICompareResult) JSON() any {
	raw, api, ratio := r.medians()
	pairs := make([]map[string]any, len(r.Pairs))
	for i, p := range r.Pairs {
		pairs[i] = map[string]any{
			"raw_requests_per_sec": round2(p.Raw.RequestsPerSec()), "api_requests_per_sec": round2(fullRate(p.API)),
			"ratio":      round2(p.Ratio()*1000) / 1000,
			"raw_p50_ms": ms(p.Raw.Tx.P50), "raw_p99_ms": ms(p.Raw.Tx.P99),
			"raw_e2e_p50_ms": ms(p.Raw.E2E.P50), "raw_e2e_p99_ms": ms(p.Raw.E2E.P99), "raw_relay": p.Raw.Relayed,
			"api_p50_ms": ms(p.API.API.P50), "api_p99_ms": ms(p.API.API.P99),
			"e2e_p50_ms": ms(p.API.E2E.P50), "e2e_p99_ms": ms(p.API.E2E.P99),
			"lost": p.API.Verify.Lost, "reordered": p.API.Verify.Reordered,
			"raw_load1": p.Raw.Load.One, "api_load1": p.API.Load.One,
		}
	}
	j := map[string]any{
		"mode": ModeAPICompare, "seed": r.Seed, "pairs": pairs,
		"raw_requests_per_sec": round2(raw), "api_requests_per_sec": round2(api), "ratio": round2(ratio*1000) / 1000,
	}
	if len(r.Pairs) > 0 {
		a := r.Pairs[0].API
		j["db"], j["broker"], j["workload"], j["concurrency"] = a.Database, a.Broker, a.Workload, a.Concurrency
	}
	return j
}

// Failure reports a full-mode run that lost or reordered events.
func (r *APICompareResult) Failure() error {
	for i, p := range r.Pairs {
		if err := p.API.Failure(); err != nil {
			return fmt.Errorf("pair %d: %w", i+1, err)
		}
	}
	return nil
}

// apiCompareSettle is the pause between two runs of a pair, so that the
// previous run's schema drop and the relay's last batches are not timed.
const apiCompareSettle = time.Second
