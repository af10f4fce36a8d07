package cli

import (
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/bench"
)

func (c *cli) benchCommand() *cobra.Command {
	var (
		cfg     bench.Config
		mode    string
		rate    int
		seed    int64
		profile string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Drive load through Herald and verify the events; time the outbox engine",
		Long: `Drive load through Herald and verify every event that reaches the broker, or
time one part of the outbox engine on its own. It shows its progress on
standard error, then a summary (standard error), then one JSON line on
standard output. It exits with status 1 when an event was lost or reordered.

Modes (--mode):
  full      HTTP API → database → relay → broker → a consumer in the bench.
            Workers (--concurrency) create orders of mixed product types,
            confirm payment and walk the line items to their end, some orders
            cancelled, for --duration or --orders (with --workload create:
            creates only), optionally paced at --rate requests/s. The consumer
            checks that every event of every order arrives in sequence and
            measures commit (API response) → receipt. Without --url it starts
            its own Herald on free ports (SQLite and embedded NATS in a
            temporary directory, or --db and --broker); with --url it drives
            that one and reads its events from --broker (for embedded, at
            --embedded-nats-addr).
  relay     Preload a backlog of --events events (over --aggregates
            aggregates) straight into the outbox, then time the relay draining
            it (events/s, peak RSS), with --workers and --batch-size; with
            --processes N, N relay processes drain it (each is this binary
            re-run as a relay of the bench's outbox and stream).
  baseline  The same drain by the plain loop: DELETE a batch … RETURNING it,
            publish it asynchronously, await the acks, COMMIT.
  compare   baseline, then relay, on identical fresh backlogs (--repeat pairs):
            prints relay/baseline.
  latency   A steady --rate of one-event transactions through the outbox
            library for --duration, the relay running: commit → broker ack and
            commit → consumer receipt.
  enqueue   --clients writers, one event per transaction, through the library
            and by a hand-written INSERT of the same row: the library's overhead.
  api-baseline
            PostgreSQL only: full mode's workload (--concurrency, --duration or
            --orders, --workload, --rate, --seed) without HTTP or the service
            layer: each request's statements, as the API sends them, in one
            raw pgx transaction, batched per round trip. Herald's relay and a
            consumer run beside it as in full mode (--no-relay: neither).
  api-compare
            api-baseline, then full, --repeat pairs with one seed: the API's
            request rate over the raw transactions'.
  cdc       PostgreSQL and NATS only: the change-data-capture relay against
            the polling relay, each on a fresh schema and stream (and slot):
            write (--clients writers for --duration/4 per style, each style
            twice: rows kept, rows deleted in their transaction, logical
            decoding messages),
            drain (a backlog of --events written by the writers, then timed
            until every event is acknowledged: poll on kept rows, cdc on
            deleted rows, cdc-msg on messages) and latency (commit → broker
            ack at 1,000 and 10,000 events/s, or --rate, for --duration).
            --parts picks some of them.

Every mode other than full (and full when it starts its own Herald) runs on a
database of its own: a fresh PostgreSQL schema (--fresh-schema, dropped at the
end) or a new SQLite file in a temporary directory; and on a namespace of its
own on the broker, deleted at the end, so that a real outbox and the orders'
stream, topic or exchange are never touched:
  embedded, nats://   a JetStream stream HERALD_BENCH_…
  kafka://            a topic herald-bench-… (the bench starts no Kafka)
  amqp://             an exchange herald.bench.… with a queue of that name
  redis://            a stream herald.bench.…
  http(s)://          a webhook receiver of the bench's own on 127.0.0.1 with
                      a fresh secret (the URL's address is not used)
The baseline's plain loop publishes with the broker's client library itself
(webhooks: through the adapter): NATS PublishMsgAsync, RabbitMQ publisher confirms, Redis
pipelined XADD, Kafka ProduceSync. With --url, full mode reads the running
Herald's events where it publishes them (not with a webhook --broker).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if spec := c.env[bench.ChildEnv]; spec != "" {
				// A relay process of a parent bench (--processes).
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
				defer stop()
				return bench.RunRelayChild(ctx, spec, os.Stdin, c.stdout)
			}
			cfg.Mode = bench.Mode(mode)
			cfg.Rate = float64(rate)
			if seed < 0 {
				return usagef("--seed must not be negative, got %d", seed)
			}
			cfg.Seed = uint64(seed)
			cfg.App = c.config()
			cfg.Progress = c.stderr
			cfg.Logger = c.log
			if err := cfg.Validate(); err != nil {
				return err
			}
			if profile != "" {
				f, err := os.Create(profile) //nolint:gosec // the path the user asked for
				if err != nil {
					return err
				}
				defer func() { _ = f.Close() }()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			res, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := res.WriteSummary(c.stderr); err != nil {
				return err
			}
			if err := bench.WriteJSON(c.stdout, res); err != nil {
				return err
			}
			return res.Failure()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&mode, "mode", string(bench.ModeFull), "full, relay, baseline, compare, latency, enqueue, api-baseline, api-compare or cdc")
	fs.StringVar(&cfg.URL, "url", "", "full mode: the base URL of a running Herald to drive (default: start one in the process)")
	fs.IntVar(&cfg.Concurrency, "concurrency", bench.DefaultConcurrency, "full, api-baseline and api-compare modes: concurrent workers (HTTP clients, or database clients)")
	fs.DurationVar(&cfg.Duration, "duration", bench.DefaultDuration, "how long the full, latency, enqueue and api-* modes run (enqueue: per variant; api-compare: per run)")
	fs.IntVar(&cfg.Orders, "orders", 0, "full mode: create this many orders instead of running for --duration")
	fs.IntVar(&rate, "rate", 0, "full mode: API requests/s over all workers (0: unpaced); latency mode: events/s (default 1000)")
	fs.StringVar(&cfg.Workload, "workload", bench.WorkloadLifecycle, "full mode: lifecycle (create, pay, walk the items) or create (creates only)")
	fs.IntVar(&cfg.Events, "events", bench.DefaultEvents, "relay, baseline and compare modes: events to preload")
	fs.IntVar(&cfg.Aggregates, "aggregates", 0, "relay, baseline and compare modes: aggregates the events are spread over (default events/10)")
	fs.IntVar(&cfg.Processes, "processes", 0, "relay mode: drain with this many relay processes (this binary re-run) instead of a relay in the bench; PostgreSQL and NATS only")
	fs.IntVar(&cfg.Clients, "clients", bench.DefaultClients, "enqueue, latency and cdc modes: concurrent writers")
	fs.IntVar(&cfg.Repeat, "repeat", 1, "compare mode: baseline/relay pairs to run (the ratio is of the medians); api-compare: api-baseline/full pairs")
	fs.StringSliceVar(&cfg.Parts, "parts", nil, "cdc mode: the parts to run, of write, drain and latency (default all)")
	fs.BoolVar(&cfg.NoRelay, "no-relay", false, "api-baseline and api-compare modes: run the raw transactions without the relay and the consumer")
	fs.BoolVar(&cfg.FreshSchema, "fresh-schema", true, "on PostgreSQL, run in a new schema and drop it at the end")
	fs.BoolVar(&cfg.Verify, "verify", true, "relay, baseline and compare modes: read the stream back and check every event")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", bench.DefaultDrainTimeout, "give up waiting for events after this long without progress")
	fs.DurationVar(&cfg.Warmup, "warmup", bench.DefaultWarmup, "latency mode: leave the first events of this period out of the percentiles")
	fs.Int64Var(&seed, "seed", 0, "full mode: seed of the workload's choices (0: random)")
	fs.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the bench process (with the Herald it runs) to this file")
	c.s.addRelay(fs)
	return cmd
}
