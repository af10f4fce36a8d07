// Package bench is herald bench: it drives load through Herald and
// verifies what reaches the broker, and it times the outbox engine's parts
// on their own.
//
// Modes:
//
//   - full: HTTP API → database → relay → broker → a consumer in the bench.
//     Workers create orders and walk them through their lifecycle; the
//     consumer checks that every event of every order arrives, in sequence,
//     and measures commit (API response) → receipt.
//   - relay: preload a backlog straight into the outbox, then time the relay
//     draining it (events/s, peak RSS).
//   - baseline: the same drain by the plain loop of the engine issue (DELETE
//     … RETURNING a batch, publish it, commit), without the relay's ordering.
//   - compare: baseline, then relay, on identical fresh backlogs: relay/baseline.
//   - latency: a steady rate of one-event transactions through outbox.Client,
//     commit → broker ack and commit → consumer receipt.
//   - enqueue: Client.EnqueueTx against a hand-written INSERT of the same row.
//   - api-baseline: the statements the API runs for the full mode's requests,
//     in raw pgx transactions (no HTTP, no service layer): the rate a
//     hand-written write path reaches.
//   - api-compare: api-baseline, then full, with the same workload: API/raw.
//
// The modes other than full run on a fresh database (a new PostgreSQL schema,
// or a new SQLite file) and on a namespace of their own on the broker (a
// NATS stream, a Kafka topic, a RabbitMQ exchange with its queue, a Redis
// stream; a webhook receiver of the bench), all removed at the end, so they
// never touch a real outbox or the orders' stream, topic or exchange.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/internal/app"
)

// Mode selects what the bench measures.
type Mode string

// Modes.
const (
	ModeFull     Mode = "full"
	ModeRelay    Mode = "relay"
	ModeBaseline Mode = "baseline"
	ModeCompare  Mode = "compare"
	ModeLatency  Mode = "latency"
	ModeEnqueue  Mode = "enqueue"
	// ModeAPIBaseline and ModeAPICompare run on PostgreSQL only.
	ModeAPIBaseline Mode = "api-baseline"
	ModeAPICompare  Mode = "api-compare"
	// ModeCDC compares the change-data-capture relay with the polling
	// relay (PostgreSQL and NATS only).
	ModeCDC Mode = "cdc"
)

// Modes lists every mode.
func Modes() []Mode {
	return []Mode{ModeFull, ModeRelay, ModeBaseline, ModeCompare, ModeLatency, ModeEnqueue, ModeAPIBaseline, ModeAPICompare, ModeCDC}
}

// Workloads of the full mode.
const (
	WorkloadLifecycle = "lifecycle" // create, pay, walk every item to its end (some orders cancelled)
	WorkloadCreate    = "create"    // create orders only
)

// Config configures a run. Zero fields take the defaults of Defaults.
type Config struct {
	Mode Mode
	// App carries the database and broker URLs, the relay tuning and the
	// tokens. An empty DatabaseURL means a fresh SQLite file in a temporary
	// directory; BrokerURL embedded means an embedded NATS server there.
	App app.Config

	// URL, in full mode, is a running Herald to drive instead of starting
	// one; App.BrokerURL then names the broker it publishes to.
	URL string
	// Concurrency is the number of full-mode workers (HTTP clients).
	Concurrency int
	// Duration bounds the full, latency and enqueue modes (enqueue: per
	// variant). In full mode, Orders bounds the run instead when set.
	Duration time.Duration
	Orders   int
	// Rate paces the full mode (API requests/s over all workers; 0: as fast
	// as the workers go) and sets the latency mode's events/s.
	Rate float64
	// Workload is the full mode's: WorkloadLifecycle or WorkloadCreate.
	Workload string

	// Events is the backlog of the relay, baseline and compare modes, spread
	// over Aggregates aggregates (0: Events/10).
	Events     int
	Aggregates int
	// Processes, in relay mode, drains with this many relay processes (this
	// binary re-run as a relay of the bench's outbox and stream) instead of
	// a relay inside the bench: PostgreSQL and NATS only.
	Processes int
	// Clients is the number of writers in the enqueue and latency modes.
	Clients int
	// Repeat runs compare's baseline/relay pair, and enqueue's rounds, this
	// many times.
	Repeat int

	// Parts are the parts the cdc mode runs: write, drain, latency; empty
	// runs all three.
	Parts []string

	// NoRelay runs api-baseline (and api-compare's baseline) without the
	// relay and the consumer that otherwise run beside its writers.
	NoRelay bool

	// FreshSchema creates a PostgreSQL schema for the run and drops it after.
	FreshSchema bool
	// Verify reads the events back from the broker and checks them.
	Verify bool
	// DrainTimeout bounds the wait for the last events after the load (full,
	// latency) and for a drain (relay, baseline).
	DrainTimeout time.Duration
	// Warmup is left out of the latency mode's percentiles.
	Warmup time.Duration
	// Seed makes the workload repeatable; 0 picks one.
	Seed uint64

	// Progress receives the progress display; nil shows none.
	Progress io.Writer
	// Logger receives the log of the Herald the bench starts; nil discards it.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultConcurrency  = 8
	DefaultDuration     = 30 * time.Second
	DefaultEvents       = 200_000
	DefaultClients      = 8
	DefaultLatencyRate  = 1000
	DefaultDrainTimeout = 2 * time.Minute
	DefaultWarmup       = time.Second
)

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeFull
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Workload == "" {
		c.Workload = WorkloadLifecycle
	}
	if c.Events <= 0 {
		c.Events = DefaultEvents
	}
	if c.Aggregates <= 0 {
		c.Aggregates = max(c.Events/10, 1)
	}
	if c.Clients <= 0 {
		c.Clients = DefaultClients
	}
	if c.Repeat <= 0 {
		c.Repeat = 1
	}
	if c.Mode == ModeLatency && c.Rate <= 0 {
		c.Rate = DefaultLatencyRate
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports settings no run can use, as *app.UsageError.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, &app.UsageError{Err: fmt.Errorf(format, args...)})
	}
	switch c.Mode {
	case "", ModeFull, ModeRelay, ModeBaseline, ModeCompare, ModeLatency, ModeEnqueue:
	case ModeAPIBaseline, ModeAPICompare, ModeCDC:
		if spec, err := app.ParseDatabaseURL(c.App.DatabaseURL, ""); err == nil && spec.Kind != app.Postgres {
			bad("--mode %s runs on PostgreSQL only: give --db postgres://…", c.Mode)
		}
	default:
		bad("--mode %q: want one of %v", c.Mode, Modes())
	}
	if c.Workload != "" && c.Workload != WorkloadLifecycle && c.Workload != WorkloadCreate {
		bad("--workload %q: want %s or %s", c.Workload, WorkloadLifecycle, WorkloadCreate)
	}
	if c.Rate < 0 {
		bad("--rate must not be negative, got %g", c.Rate)
	}
	if c.Orders < 0 || c.Events < 0 || c.Aggregates < 0 || c.Concurrency < 0 || c.Clients < 0 || c.Repeat < 0 {
		bad("counts (--orders, --events, --aggregates, --concurrency, --clients, --repeat) must not be negative")
	}
	if c.Aggregates > c.Events {
		bad("--aggregates (%d) must not exceed --events (%d)", c.Aggregates, c.Events)
	}
	if c.Processes < 0 || c.Processes > 64 {
		bad("--processes must be between 0 and 64, got %d", c.Processes)
	}
	if c.Processes > 0 && c.Mode != ModeRelay {
		bad("--processes drains with relay processes and needs --mode relay")
	}
	if c.URL != "" && c.Mode != ModeFull {
		bad("--url drives a running Herald and needs --mode full")
	}
	if err := c.App.ValidateDatabase(); err != nil {
		errs = append(errs, err)
	}
	if err := c.App.ValidateBroker(); err != nil {
		errs = append(errs, err)
	}
	if spec, err := app.ParseBrokerURL(c.App.BrokerURL); err == nil && spec.Kind == app.BrokerLog {
		bad("--broker log cannot be consumed; the bench needs embedded, nats://, kafka://, amqp://, redis:// or http(s)://")
	}
	if err := app.ValidateRelayConfig(relayConfig(c.App.Relay)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Result is what a run found.
type Result interface {
	// WriteSummary writes the human summary.
	WriteSummary(w io.Writer) error
	// JSON is the one line printed on standard output.
	JSON() any
	// Failure says why the run counts as failed (events lost or
	// reordered), nil if it does not.
	Failure() error
}

// Run runs the bench of cfg.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	switch cfg.Mode {
	case ModeFull:
		return runFull(ctx, cfg)
	case ModeRelay:
		return runDrain(ctx, cfg, []drainKind{drainRelay})
	case ModeBaseline:
		return runDrain(ctx, cfg, []drainKind{drainBaseline})
	case ModeCompare:
		kinds := make([]drainKind, 0, 2*cfg.Repeat)
		for range cfg.Repeat {
			kinds = append(kinds, drainBaseline, drainRelay)
		}
		return runDrain(ctx, cfg, kinds)
	case ModeLatency:
		return runLatency(ctx, cfg)
	case ModeEnqueue:
		return runEnqueue(ctx, cfg)
	case ModeAPIBaseline:
		return runAPIBaseline(ctx, cfg)
	case ModeAPICompare:
		return runAPICompare(ctx, cfg)
	case ModeCDC:
		return runCDC(ctx, cfg)
	}
	return nil, fmt.Errorf("bench: unknown mode %q", cfg.Mode)
}

// WriteJSON writes r's JSON line.
func WriteJSON(w io.Writer, r Result) error {
	b, err := json.Marshal(r.JSON())
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
