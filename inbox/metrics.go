package inbox

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what an inbox does, for Prometheus. Register its
// Collectors with the consumer's registry. A nil *Metrics counts nothing.
type Metrics struct {
	events *prometheus.CounterVec
}

// NewMetrics returns the counters of the inbox called name (the label
// inbox), all at zero:
//
//	herald_inbox_events_total{inbox, outcome}
//
// with outcome applied, duplicate, held, repeated (the Outcomes of
// Process), released (held events handled once their gap was filled),
// failed (the handler or the database failed; the message is delivered
// again) and invalid (a body that is not an event the inbox can take).
func NewMetrics(name string) *Metrics {
	m := &Metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "herald_inbox_events_total",
		Help:        "Events taken through the inbox, by outcome.",
		ConstLabels: prometheus.Labels{"inbox": name},
	}, []string{"outcome"})}
	for _, o := range []string{"applied", "duplicate", "held", "repeated", "released", "failed", "invalid"} {
		m.events.WithLabelValues(o)
	}
	return m
}

// Collectors returns the collectors to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events}
}

func (m *Metrics) observe(r Result) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(r.Outcome.String()).Inc()
	m.released(r.Released)
}

func (m *Metrics) released(n int) {
	if m == nil || n == 0 {
		return
	}
	m.events.WithLabelValues("released").Add(float64(n))
}

func (m *Metrics) failed(err error) {
	if m == nil {
		return
	}
	if errors.Is(err, ErrInvalidEvent) {
		m.events.WithLabelValues("invalid").Inc()
		return
	}
	m.events.WithLabelValues("failed").Inc()
}

// GapCollector reports, at each scrape, the inbox's gaps older than a
// threshold (Admin.Gaps):
//
//	herald_inbox_gap_aggregates{inbox}          aggregates with such a gap
//	herald_inbox_gap_held_events{inbox}         events waiting behind them
//	herald_inbox_gap_oldest_age_seconds{inbox}  how long the oldest has waited
//
// A scrape queries the database, bounded by a timeout; if the query fails
// the collector reports an invalid metric, which the scrape shows.
type GapCollector struct {
	admin     Admin
	olderThan time.Duration
	timeout   time.Duration
	aggs      *prometheus.Desc
	held      *prometheus.Desc
	age       *prometheus.Desc
}

// NewGapCollector returns a collector of the gaps of admin (a Driver) that
// are older than olderThan, for the inbox called name.
func NewGapCollector(admin Admin, name string, olderThan time.Duration) *GapCollector {
	labels := prometheus.Labels{"inbox": name}
	return &GapCollector{
		admin: admin, olderThan: olderThan, timeout: 5 * time.Second,
		aggs: prometheus.NewDesc("herald_inbox_gap_aggregates",
			"Aggregates whose oldest held event has waited past the threshold for a predecessor.", nil, labels),
		held: prometheus.NewDesc("herald_inbox_gap_held_events",
			"Events held behind the gaps past the threshold.", nil, labels),
		age: prometheus.NewDesc("herald_inbox_gap_oldest_age_seconds",
			"How long the oldest held event has waited; 0 when none has waited past the threshold.", nil, labels),
	}
}

// Describe implements prometheus.Collector.
func (c *GapCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.aggs
	ch <- c.held
	ch <- c.age
}

// Collect implements prometheus.Collector.
func (c *GapCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	gaps, err := c.admin.Gaps(ctx, c.olderThan)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.aggs, err)
		return
	}
	held, age := 0, 0.0
	for _, g := range gaps {
		held += g.Held
		age = max(age, time.Since(g.Since).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(c.aggs, prometheus.GaugeValue, float64(len(gaps)))
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(held))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}
