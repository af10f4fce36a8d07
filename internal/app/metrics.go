package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/heraldhq/herald/outbox"
)

// newRegistry returns the registry /metrics serves: Go and process metrics,
// the relay's counters and the outbox backlog.
func newRegistry(store outbox.Admin, counters func() outbox.RelayCounters) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&outboxCollector{store: store, counters: counters},
	)
	return reg
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
	descPending = prometheus.NewDesc("herald_outbox_pending",
		"Events waiting in the outbox.", nil, nil)
	descRetrying = prometheus.NewDesc("herald_outbox_in_retry",
		"Pending events that failed at least once.", nil, nil)
	descLag = prometheus.NewDesc("herald_outbox_lag_seconds",
		"Age of the oldest pending event; 0 when the outbox is empty.", nil, nil)
	descDLQ = prometheus.NewDesc("herald_outbox_dlq_size",
		"Open dead letters waiting for an operator.", nil, nil)
)

// outboxCollector reads the relay's counters and the backlog at scrape time.
type outboxCollector struct {
	store    outbox.Admin
	counters func() outbox.RelayCounters
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPublished, descRetried, descDeadLettered, descBatches, descPending, descRetrying, descLag, descDLQ} {
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
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.store.Stats(ctx)
	if err != nil {
		for _, d := range []*prometheus.Desc{descPending, descRetrying, descLag, descDLQ} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	lag := 0.0
	if !st.OldestPending.IsZero() {
		lag = max(time.Since(st.OldestPending).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(descRetrying, prometheus.GaugeValue, float64(st.Retrying))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(descDLQ, prometheus.GaugeValue, float64(st.DeadLetters))
}
