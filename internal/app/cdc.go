package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgcdc"
)

// OpenCDC returns the change-data-capture source of db's outbox (RelayModeCDC),
// with the slot cfg.CDCSlot names. It does not set it up: call Setup.
func OpenCDC(db *Database, cfg Config) (*pgcdc.Source, error) {
	if db.pg == nil {
		return nil, usagef("--mode cdc needs PostgreSQL (--db postgres://…): it reads the write-ahead log")
	}
	return pgcdc.New(db.pg, db.Spec.URL, pgcdc.Config{
		Slot:                  cfg.CDCSlot,
		Publication:           cfg.CDCSlot,
		MoveOnPastDeadLetters: cfg.Relay.MoveOnPastDeadLetters,
		Logger:                cfg.withDefaults().Logger.With("component", "cdc"),
	})
}

// slotHealth reads the slot's lag for the health verdict.
func slotHealth(src *pgcdc.Source) func(ctx context.Context) (*outbox.SlotHealth, error) {
	return func(ctx context.Context) (*outbox.SlotHealth, error) {
		l, err := src.Lag(ctx)
		if err != nil {
			return nil, err
		}
		if !l.Exists {
			return nil, nil //nolint:nilnil // no slot: nothing to judge
		}
		return &outbox.SlotHealth{Name: src.Slot(), LagBytes: l.Bytes, Lag: l.Age, Active: l.Active}, nil
	}
}

var (
	descSlotLagBytes = prometheus.NewDesc("herald_cdc_slot_lag_bytes",
		"Write-ahead log PostgreSQL keeps for the CDC relay's replication slot: from its confirmed position to the end of the log.", []string{"slot"}, nil)
	descSlotLagSeconds = prometheus.NewDesc("herald_cdc_slot_lag_seconds",
		"Age of the oldest transaction the CDC relay has read and not finished (0 when none).", []string{"slot"}, nil)
	descSlotActive = prometheus.NewDesc("herald_cdc_slot_active",
		"1 when a relay streams the replication slot, 0 when none does (PostgreSQL then keeps write-ahead log for it).", []string{"slot"}, nil)
)

// slotCollector reports the replication slot's lag on each scrape (one
// query on pg_replication_slots).
type slotCollector struct{ src *pgcdc.Source }

func (c slotCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSlotLagBytes
	ch <- descSlotLagSeconds
	ch <- descSlotActive
}

func (c slotCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	l, err := c.src.Lag(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descSlotLagBytes, err)
		return
	}
	if !l.Exists {
		return
	}
	active := 0.0
	if l.Active {
		active = 1
	}
	slot := c.src.Slot()
	ch <- prometheus.MustNewConstMetric(descSlotLagBytes, prometheus.GaugeValue, float64(l.Bytes), slot)
	ch <- prometheus.MustNewConstMetric(descSlotLagSeconds, prometheus.GaugeValue, l.Age.Seconds(), slot)
	ch <- prometheus.MustNewConstMetric(descSlotActive, prometheus.GaugeValue, active, slot)
}

// DropSlot drops the CDC relay's replication slot and publication
// (herald relay --mode cdc --drop-slot).
func DropSlot(ctx context.Context, cfg Config) error {
	if err := cfg.ValidateRelayMode(); err != nil {
		return err
	}
	if cfg.RelayMode != RelayModeCDC {
		return usagef("--drop-slot needs --mode cdc")
	}
	db, err := OpenDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	src, err := OpenCDC(db, cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return src.DropSlot(ctx)
}

// slotHealth is the health verdict's view of the slot, nil without CDC.
func (a *App) slotHealth() func(ctx context.Context) (*outbox.SlotHealth, error) {
	if a.CDC == nil {
		return nil
	}
	return slotHealth(a.CDC)
}
