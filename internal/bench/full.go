package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	hbroker "github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/order"
)

// orderTrack is what the full mode knows of one of its orders.
type orderTrack struct {
	respAt map[int64]time.Time // order version → when the API answered the request that made it
	early  []arrival           // events received before the answer of their version
}

type arrival struct {
	version int64
	at      time.Time
}

// pendingEvent is an event of an order the bench has not registered yet
// (its create response is still on the way) or of somebody else's order.
type pendingEvent struct {
	seq     int64
	version int64
	at      time.Time
}

// fullRun is the state of one full-mode run.
type fullRun struct {
	cfg    Config
	client *apiClient
	v      *Verifier

	mu      sync.Mutex
	orders  map[uuid.UUID]*orderTrack
	unknown map[uuid.UUID][]pendingEvent
	// uncertain orders had a request whose outcome is unknown (a 5xx, a
	// timeout): their audit trail tells what they published.
	uncertain map[uuid.UUID]bool

	e2e      Samples
	api      Samples
	perKind  map[string]*Samples
	errKinds sync.Map // "create: HTTP 409" → *atomic.Int64

	created, requests, errors, mismatches, lostCreates atomic.Int64
	started                                            atomic.Int64
	lastRecv                                           atomic.Int64

	pace  *pacer
	start time.Time
}

// pacer spaces requests rate per second apart over all workers; a nil
// pacer does not wait.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        atomic.Int64
}

func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{start: time.Now(), interval: time.Duration(float64(time.Second) / rate)}
}

func (p *pacer) wait(ctx context.Context) {
	if p == nil {
		return
	}
	k := p.n.Add(1) - 1
	sleepUntil(ctx, p.start.Add(time.Duration(k)*p.interval))
}

// FullResult is the result of the full mode.
type FullResult struct {
	Target      string
	Database    string
	Broker      string
	Workload    string
	Concurrency int
	Rate        float64
	Orders      int64
	Requests    int64
	Errors      int64
	ErrorKinds  map[string]int64
	Mismatches  int64
	Unverified  int64
	Duration    time.Duration // of the load
	Span        time.Duration // from the first request to the last event received
	API         Summary
	PerKind     map[string]Summary
	E2E         Summary
	Verify      VerifyReport
	Load        Load
	LoadAfter   Load
}

func runFull(ctx context.Context, cfg Config) (*FullResult, error) {
	t, err := openTarget(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer t.Close()

	r := &fullRun{
		cfg:       cfg,
		v:         NewVerifier(),
		orders:    make(map[uuid.UUID]*orderTrack),
		unknown:   make(map[uuid.UUID][]pendingEvent),
		uncertain: make(map[uuid.UUID]bool),
		perKind:   make(map[string]*Samples),
	}
	for _, k := range requestKinds {
		r.perKind[k] = &Samples{}
	}
	token := cfg.App.APIToken
	if token == "" {
		token = cfg.App.AdminToken
	}
	r.client = &apiClient{base: t.url, token: token, http: &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        2 * cfg.Concurrency,
			MaxIdleConnsPerHost: 2 * cfg.Concurrency,
			IdleConnTimeout:     time.Minute,
		},
	}}
	defer r.client.http.CloseIdleConnections()

	cons, err := consume(ctx, t.ep, true, r.onEvent)
	if err != nil {
		return nil, err
	}
	defer cons.Close()

	res := &FullResult{Target: t.url, Database: t.database, Broker: t.broker, Workload: cfg.Workload,
		Concurrency: cfg.Concurrency, Rate: cfg.Rate, Load: ReadLoad()}
	start := time.Now()
	r.start = start
	prog := StartProgress(cfg.Progress, r.status)
	defer prog.Stop()

	deadline := start.Add(cfg.Duration)
	r.pace = newPacer(cfg.Rate)
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64() //nolint:gosec // a workload's seed, not a secret
	}
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		p := plan{rng: rand.New(rand.NewPCG(seed, uint64(w)))} //nolint:gosec // workload randomness
		wg.Go(func() { r.worker(ctx, p, w, deadline) })
	}
	wg.Wait()
	res.Duration = time.Since(start)

	// Orders whose last request may or may not have committed: their audit
	// trail says how many events they must have published.
	r.settleUncertain(ctx)
	cons.waitFor(ctx, cfg.DrainTimeout, func() bool { return r.v.Pending() == 0 })
	prog.Stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res.LoadAfter = ReadLoad()
	if last := r.lastRecv.Load(); last > 0 {
		res.Span = time.Unix(0, last).Sub(start)
	}
	res.Orders, res.Requests, res.Errors = r.created.Load(), r.requests.Load(), r.errors.Load()
	res.Mismatches = r.mismatches.Load()
	res.Unverified = r.lostCreates.Load()
	res.API, res.E2E = r.api.Summary(), r.e2e.Summary()
	res.PerKind = make(map[string]Summary)
	for k, s := range r.perKind {
		if s.Len() > 0 {
			res.PerKind[k] = s.Summary()
		}
	}
	res.ErrorKinds = make(map[string]int64)
	r.errKinds.Range(func(k, v any) bool {
		res.ErrorKinds[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	res.Verify = r.v.Report()
	return res, nil
}

// status is the progress line.
func (r *fullRun) status() (float64, string) {
	frac := -1.0
	if r.cfg.Orders > 0 {
		frac = float64(r.created.Load()) / float64(r.cfg.Orders)
	}
	secs := max(time.Since(r.start).Seconds(), 1e-3)
	req, got := r.requests.Load(), r.v.Received()
	return frac, fmt.Sprintf("%d orders  %d requests (%.0f/s)  %d/%d events received (%.0f/s)  %d errors",
		r.created.Load(), req, float64(req)/secs, got, got+r.v.Pending(), float64(got)/secs, r.errors.Load())
}

// more reports whether a worker may start another order.
func (r *fullRun) more(ctx context.Context, deadline time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	if r.cfg.Orders > 0 {
		return r.started.Add(1) <= int64(r.cfg.Orders)
	}
	return time.Now().Before(deadline)
}

func (r *fullRun) worker(ctx context.Context, p plan, w int, deadline time.Time) {
	for n := 0; r.more(ctx, deadline); n++ {
		req := p.createRequest(fmt.Sprintf("bench-%d-%d", w, n))
		r.pace.wait(ctx)
		t0 := time.Now()
		o, err := r.client.create(ctx, req)
		at := time.Now()
		r.record(reqCreate, at.Sub(t0), err)
		if err != nil {
			if committed(err) {
				r.lostCreates.Add(1) // may exist, but its id is unknown: not verifiable
			}
			continue
		}
		r.register(o.ID, at)
		if r.cfg.Workload != WorkloadLifecycle {
			continue
		}
		for _, s := range p.walk(&o) {
			if ctx.Err() != nil || (r.cfg.Orders == 0 && time.Now().After(deadline)) {
				break
			}
			want, model, err := expectedEvents(&o, s)
			if err != nil {
				r.mismatches.Add(1)
				break
			}
			r.pace.wait(ctx)
			t0 := time.Now()
			got, err := r.client.run(ctx, &o, s)
			at := time.Now()
			r.record(s.kind, at.Sub(t0), err)
			if err != nil {
				if committed(err) {
					r.markUncertain(o.ID)
				}
				break
			}
			if !sameState(&got, &model) {
				r.mismatches.Add(1)
				r.markUncertain(o.ID)
				break
			}
			r.responded(o.ID, got.Version, at, want)
			o = got
		}
	}
}

func (r *fullRun) record(kind string, d time.Duration, err error) {
	r.requests.Add(1)
	if err != nil {
		r.errors.Add(1)
		key := kind + ": " + errKind(err)
		c, _ := r.errKinds.LoadOrStore(key, &atomic.Int64{})
		c.(*atomic.Int64).Add(1)
		return
	}
	r.api.Add(d)
	r.perKind[kind].Add(d)
}

func errKind(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return fmt.Sprintf("HTTP %d", ae.status)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "transport error"
}

// register records a new order (created at at) and the events that arrived
// before its create response did.
func (r *fullRun) register(id uuid.UUID, at time.Time) {
	r.created.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	ot := &orderTrack{respAt: map[int64]time.Time{1: at}}
	r.orders[id] = ot
	r.v.Expect(id.String(), 1)
	for _, e := range r.unknown[id] {
		r.observe(id, ot, e.seq, e.version, e.at)
	}
	delete(r.unknown, id)
}

// responded records that the request making version of order id was
// answered at at and wrote n events.
func (r *fullRun) responded(id uuid.UUID, version int64, at time.Time, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ot := r.orders[id]
	ot.respAt[version] = at
	r.v.Expect(id.String(), n)
	kept := ot.early[:0]
	for _, e := range ot.early {
		if e.version == version {
			r.e2e.Add(max(e.at.Sub(at), 0))
			continue
		}
		kept = append(kept, e)
	}
	ot.early = kept
}

func (r *fullRun) markUncertain(id uuid.UUID) {
	r.mu.Lock()
	r.uncertain[id] = true
	r.mu.Unlock()
}

// settleUncertain sets the expected events of uncertain orders from their
// audit trail.
func (r *fullRun) settleUncertain(ctx context.Context) {
	r.mu.Lock()
	ids := make([]uuid.UUID, 0, len(r.uncertain))
	for id := range r.uncertain {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		n, err := r.client.auditEvents(ctx, id)
		if err != nil {
			r.lostCreates.Add(1)
			r.v.SetExpected(id.String(), r.v.Distinct(id.String()))
			continue
		}
		r.v.SetExpected(id.String(), n)
	}
}

// onEvent is the consumer: it verifies the sequence of each event of the
// bench's orders and measures commit → receipt.
func (r *fullRun) onEvent(d hbroker.Delivery, at time.Time) {
	if d.Err != nil {
		r.v.Invalid()
		return
	}
	id, err := uuid.Parse(d.Event.Subject)
	if err != nil || d.Event.AggregateType != order.AggregateType {
		return // not an order event: somebody else's
	}
	var data struct {
		Version int64 `json:"version"`
	}
	_ = json.Unmarshal(d.Event.Data, &data)
	r.mu.Lock()
	defer r.mu.Unlock()
	ot := r.orders[id]
	if ot == nil {
		r.unknown[id] = append(r.unknown[id], pendingEvent{seq: d.Event.Sequence, version: data.Version, at: at})
		return
	}
	r.observe(id, ot, d.Event.Sequence, data.Version, at)
}

// observe records one event of a registered order. r.mu is held.
func (r *fullRun) observe(id uuid.UUID, ot *orderTrack, seq, version int64, at time.Time) {
	if r.v.Observe(id.String(), seq) == Duplicate {
		return
	}
	if n := at.UnixNano(); n > r.lastRecv.Load() {
		r.lastRecv.Store(n)
	}
	if resp, ok := ot.respAt[version]; ok {
		r.e2e.Add(max(at.Sub(resp), 0))
		return
	}
	ot.early = append(ot.early, arrival{version: version, at: at})
}

// EventsPerSec is the events received per second from the first request to
// the last event.
func (r *FullResult) EventsPerSec() float64 {
	if r.Span <= 0 {
		return 0
	}
	return float64(r.Verify.Received) / r.Span.Seconds()
}

// WriteSummary writes the human summary.
func (r *FullResult) WriteSummary(w io.Writer) error {
	p := &errWriter{w: w}
	rate := "unpaced"
	if r.Rate > 0 {
		rate = fmt.Sprintf("paced at %.0f requests/s", r.Rate)
	}
	p.printf("herald bench --mode full: %s (%s → %s), workload %s, %d workers, %s\n",
		r.Target, r.Database, r.Broker, r.Workload, r.Concurrency, rate)
	p.printf("  load average %s at the start, %s at the end\n", r.Load, r.LoadAfter)
	p.printf("  %d orders, %d requests in %s (%.1f requests/s), %d errors\n",
		r.Orders, r.Requests, r.Duration.Round(time.Millisecond), float64(r.Requests)/r.Duration.Seconds(), r.Errors)
	for k, n := range r.ErrorKinds {
		p.printf("    %-32s %d\n", k, n)
	}
	if p.err != nil {
		return p.err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintf(tw, "  API latency\t%s\n", r.API)
	for _, k := range requestKinds {
		if s, ok := r.PerKind[k]; ok {
			_, _ = fmt.Fprintf(tw, "    %s\t%s\n", k, s)
		}
	}
	_, _ = fmt.Fprintf(tw, "  commit → consumer\t%s\n", r.E2E)
	if err := tw.Flush(); err != nil {
		return err
	}
	v := r.Verify
	p.printf("  events: %d received of %d expected over %d orders, %.0f events/s; lost %d, reordered %d, duplicates %d, unexpected %d, unreadable %d\n",
		v.Received, v.Expected, v.Aggregates, r.EventsPerSec(), v.Lost, v.Reordered, v.Duplicates, v.Unexpected, v.Invalid)
	if r.Mismatches > 0 {
		p.printf("  %d responses differed from the state machines' model\n", r.Mismatches)
	}
	if r.Unverified > 0 {
		p.printf("  %d orders could not be verified (a create or audit read failed without an answer)\n", r.Unverified)
	}
	if len(v.Examples) > 0 {
		p.printf("  e.g. orders %v\n", v.Examples)
	}
	return p.err
}

// fullJSON is the documented result line, followed by a few fields of context.
type fullJSON struct {
	Orders       int64   `json:"orders"`
	Events       int64   `json:"events"`
	APIP50       float64 `json:"api_p50_ms"`
	APIP99       float64 `json:"api_p99_ms"`
	E2EP50       float64 `json:"e2e_p50_ms"`
	E2EP99       float64 `json:"e2e_p99_ms"`
	EventsPerSec float64 `json:"events_per_sec"`
	Lost         int64   `json:"lost"`
	Reordered    int64   `json:"reordered"`
	Duplicates   int64   `json:"duplicates"`

	Requests    int64   `json:"requests"`
	RequestsPS  float64 `json:"requests_per_sec"`
	Errors      int64   `json:"errors"`
	CreateP50   float64 `json:"create_p50_ms"`
	CreateP99   float64 `json:"create_p99_ms"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Workload    string  `json:"workload"`
	Database    string  `json:"db"`
	Broker      string  `json:"broker"`
	Seconds     float64 `json:"seconds"`
	Load1       float64 `json:"load1"`
}

// JSON returns the documented result line.
func (r *FullResult) JSON() any {
	c := r.PerKind[reqCreate]
	return fullJSON{
		Orders: r.Orders, Events: r.Verify.Received,
		APIP50: ms(r.API.P50), APIP99: ms(r.API.P99), E2EP50: ms(r.E2E.P50), E2EP99: ms(r.E2E.P99),
		EventsPerSec: round2(r.EventsPerSec()),
		Lost:         r.Verify.Lost, Reordered: r.Verify.Reordered, Duplicates: r.Verify.Duplicates,
		Requests: r.Requests, RequestsPS: round2(float64(r.Requests) / r.Duration.Seconds()), Errors: r.Errors,
		CreateP50: ms(c.P50), CreateP99: ms(c.P99),
		Concurrency: r.Concurrency, Rate: r.Rate, Workload: r.Workload, Database: r.Database, Broker: r.Broker,
		Seconds: round2(r.Duration.Seconds()), Load1: r.Load.One,
	}
}

// Failure reports lost, reordered, unexpected or unreadable events.
func (r *FullResult) Failure() error {
	v := r.Verify
	if v.OK() {
		return nil
	}
	return fmt.Errorf("verification failed: %d events lost, %d reordered, %d unexpected, %d unreadable (e.g. orders %v)",
		v.Lost, v.Reordered, v.Unexpected, v.Invalid, v.Examples)
}
