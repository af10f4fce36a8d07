package app

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/heraldhq/herald/outbox"
)

// Bounds of the outbox figures /metrics reports.
const (
	// statsInterval is how long one reading of the outbox's figures (one
	// Stats query) serves /metrics: however many scrapers there are, the
	// database answers at most one Stats query per interval.
	statsInterval = 5 * time.Second
	// statsTimeout bounds that query.
	statsTimeout = 5 * time.Second
)

// newRegistry returns the registry /metrics serves: Go and process metrics,
// the build, the relay's counters (in total and by event type) and the
// outbox backlog.
func newRegistry(store outbox.Admin, counters func() outbox.RelayCounters, events *eventCounter, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herald_build_info",
		Help: "Always 1; its labels name the running build.",
	}, []string{"version", "goversion"})
	if version == "" {
		version = "unknown"
	}
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		events.vec,
		newOutboxCollector(store, counters, statsInterval, time.Now),
	)
	return reg
}

// eventCounter counts the relay's outcomes by event type; the relay calls
// observe for each event of a committed batch (RelayConfig.OnOutcome).
type eventCounter struct{ vec *prometheus.CounterVec }

func newEventCounter() *eventCounter {
	return &eventCounter{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_relay_events_total",
		Help: "Events the relay finished, by event type and outcome (published, retried, dead_lettered, released: given back unsent behind a failed event of its run).",
	}, []string{"event_type", "outcome"})}
}

func (c *eventCounter) observe(r *outbox.Record, o outbox.Outcome) {
	outcome := "published"
	switch o.Kind {
	case outbox.OutcomeRetry:
		outcome = "retried"
	case outbox.OutcomeDeadLetter:
		outcome = "dead_lettered"
	case outbox.OutcomeReleased:
		outcome = "released"
	}
	c.vec.WithLabelValues(r.Type, outcome).Inc()
}

var (
	descPublished = prometheus.NewDesc("herald_relay_published_total",
		"Events the broker acknowledged, since this process started.", nil, nil)
	descRetried = prometheus.NewDesc("herald_relay_retried_total",
		"Failed publish attempts scheduled for a retry.", nil, nil)
	descDeadLettered = prometheus.NewDesc("herald_relay_dead_lettered_total",
		"Events moved to the dead-letter queue.", nil, nil)
	descBatches = prometheus.NewDesc("herald_relay_batches_total",
		"Non-empty batches the relay finished.", nil, nil)
	descBrokerUp = prometheus.NewDesc("herald_relay_broker_up",
		"1 while the relay reaches the broker; 0 from a batch that found it unavailable until one it acknowledged.", nil, nil)
	descOutages = prometheus.NewDesc("herald_relay_broker_outages_total",
		"Batches given back untouched because the broker was unavailable (no attempt charged).", nil, nil)
	descPending = prometheus.NewDesc("herald_outbox_pending",
		"Events waiting in the outbox.", nil, nil)
	descRetrying = prometheus.NewDesc("herald_outbox_in_retry",
		"Pending events that failed at least once.", nil, nil)
	descLag = prometheus.NewDesc("herald_outbox_lag_seconds",
		"Age of the oldest pending event; 0 when the outbox is empty.", nil, nil)
	descDLQ = prometheus.NewDesc("herald_outbox_dlq_size",
		"Open dead letters waiting for an operator.", nil, nil)
	descParked = prometheus.NewDesc("herald_outbox_parked",
		"Pending events waiting behind an open dead letter of their aggregate.", nil, nil)
)

// outboxCollector reads the relay's counters at scrape time, and the
// backlog from a snapshot of the outbox's figures at most interval old.
// /metrics is open to anyone who reaches the listener, and a Stats query
// scans the outbox: one query per scrape let a few scraping loops slow
// every write. So the first scrape after the interval queries, concurrent
// scrapes wait for its answer and share it, and later ones within the
// interval reuse it; a failed query is kept as long, so scrapes do not
// pile onto a database in trouble. The lag is the snapshot's oldest
// pending event's age at scrape time.
type outboxCollector struct {
	store    outbox.Admin
	counters func() outbox.RelayCounters
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex // held while the snapshot is read or refreshed
	taken time.Time  // when snap was read; zero before the first read
	snap  outbox.Stats
	err   error
}

func newOutboxCollector(store outbox.Admin, counters func() outbox.RelayCounters, interval time.Duration, now func() time.Time) *outboxCollector {
	return &outboxCollector{store: store, counters: counters, interval: interval, now: now}
}

// stats returns the snapshot, refreshing it first if it is older than the
// interval. Callers that arrive during a refresh wait for it.
func (c *outboxCollector) stats() (outbox.Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.taken.IsZero() {
		if age := c.now().Sub(c.taken); age >= 0 && age < c.interval {
			return c.snap, c.err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	c.snap, c.err = c.store.Stats(ctx)
	c.taken = c.now()
	return c.snap, c.err
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPublished, descRetried, descDeadLettered, descBatches, descBrokerUp, descOutages, descPending, descRetrying, descLag, descDLQ, descParked} {
		ch <- d
	}
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	if c.counters != nil {
		rc := c.counters()
		ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(rc.Published))
		ch <- prometheus.MustNewConstMetric(descRetried, prometheus.CounterValue, float64(rc.Retried))
		ch <- prometheus.MustNewConstMetric(descDeadLettered, prometheus.CounterValue, float64(rc.DeadLettered))
		ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(rc.Batches))
		up := 1.0
		if rc.BrokerDown {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(descBrokerUp, prometheus.GaugeValue, up)
		ch <- prometheus.MustNewConstMetric(descOutages, prometheus.CounterValue, float64(rc.Outages))
	}
	st, err := c.stats()
	if err != nil {
		for _, d := range []*prometheus.Desc{descPending, descRetrying, descLag, descDLQ, descParked} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	lag := 0.0
	if !st.OldestPending.IsZero() {
		lag = max(c.now().Sub(st.OldestPending).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(descRetrying, prometheus.GaugeValue, float64(st.Retrying))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(descDLQ, prometheus.GaugeValue, float64(st.DeadLetters))
	ch <- prometheus.MustNewConstMetric(descParked, prometheus.GaugeValue, float64(st.Parked))
}
