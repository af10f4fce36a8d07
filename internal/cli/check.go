package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/ordersvc"
)

// errMismatches makes herald check exit 1 when it found something.
var errMismatches = errors.New("the audit trail and the broker disagree")

func (c *cli) checkCommand() *cobra.Command {
	var (
		since    time.Duration
		timeout  time.Duration
		textfile string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Reconcile the audit trail with the outbox, the dead-letter queue and the broker",
		Long: `Read the audit trail (one event per status change) and the broker, and report
every audited event that is neither pending in the outbox, dead-lettered nor on
the broker, and every event on the broker without an audit row. It reads the
database first and the broker second, so an event published meanwhile is not
reported. It exits 0 when everything matches and 1 when it reports anything.

The broker is read within what it retains: NATS JetStream keeps the stream's
messages until its limits drop them, Kafka its topic's retention, Redis its
stream's MAXLEN; check a window the broker still holds (--since). NATS says
where its stream ends; Kafka and Redis are read until they deliver nothing for
2 seconds. RabbitMQ cannot be read back without consuming its queue, and a
webhook not at all.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return usagef("--since must not be negative, got %s", since)
			}
			if timeout <= 0 {
				return usagef("--timeout must be positive, got %s", timeout)
			}
			cfg := c.config()
			if err := cfg.ValidateBroker(); err != nil {
				return err
			}
			spec, _ := app.ParseBrokerURL(cfg.BrokerURL)
			var url string
			switch spec.Kind {
			case app.BrokerEmbedded:
				url = "nats://" + cfg.EmbeddedNATSAddr
			case app.BrokerNATS:
				url = spec.URL
			case app.BrokerLog, app.BrokerWebhook:
				return usagef("herald check reads the broker back, which --broker %s cannot be", spec.Kind)
			case app.BrokerRabbitMQ:
				// Reading a RabbitMQ queue back consumes it: the check would
				// take its consumers' messages.
				return usagef("herald check cannot read RabbitMQ back without consuming its queue; reconcile from the consumers' side")
			}
			from := time.Time{}
			if since > 0 {
				from = time.Now().Add(-since)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			// The database first, the broker second, the audit trail again:
			// an event published in between is on the broker when it is
			// read, and its audit row is in the second reading.
			var audited, later []ordersvc.AuditedEvent
			var onBroker map[uuid.UUID]ordersvc.BrokerEvent
			err := c.withExisting(ctx, true, func(ctx context.Context, db *app.Database) error {
				var err error
				if audited, err = db.Audit.AuditedEvents(ctx, from); err != nil {
					return err
				}
				if url != "" {
					onBroker, err = readStream(ctx, url, app.NATSConfig(c.log))
				} else {
					onBroker, err = readUntilQuiet(ctx, cfg)
				}
				if err != nil {
					return err
				}
				later, err = db.Audit.AuditedEvents(ctx, from)
				return err
			})
			if err != nil {
				return err
			}
			found := ordersvc.Reconcile(audited, onBroker, from, later...)
			if textfile != "" {
				if err := writeCheckMetrics(textfile, audited, onBroker, found); err != nil {
					return err
				}
			}
			return writeCheck(c.stdout, audited, onBroker, found)
		},
	}
	cmd.Flags().DurationVar(&since, "since", 0, "check the events of the last D (e.g. 24h); 0 checks everything")
	cmd.Flags().StringVar(&textfile, "textfile", "", "also write the result as Prometheus metrics to this file "+
		"(for node_exporter's textfile collector, when herald check runs from cron)")
	addTimeout(cmd.Flags(), &timeout)
	return cmd
}

// writeCheckMetrics writes the result for Prometheus (the file is replaced
// atomically): herald_check_mismatches is what to alert on.
func writeCheckMetrics(path string, audited []ordersvc.AuditedEvent, onBroker map[uuid.UUID]ordersvc.BrokerEvent, found []ordersvc.Mismatch) error {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		g.Set(v)
		reg.MustRegister(g)
	}
	gauge("herald_check_mismatches", "Audited events neither pending, dead-lettered nor on the broker, and broker events without an audit row, at the last herald check.", float64(len(found)))
	gauge("herald_check_audited_events", "Audited events the last herald check read.", float64(len(audited)))
	gauge("herald_check_broker_events", "Events on the broker the last herald check read.", float64(len(onBroker)))
	gauge("herald_check_last_run_timestamp_seconds", "When the last herald check ran, in Unix seconds.", float64(time.Now().Unix()))
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return fmt.Errorf("--textfile: %w", err)
	}
	return nil
}

func writeCheck(w io.Writer, audited []ordersvc.AuditedEvent, onBroker map[uuid.UUID]ordersvc.BrokerEvent, found []ordersvc.Mismatch) error {
	p := &printer{w: w}
	for _, m := range found {
		p.printf("MISSING\tevent %s\torder %s\t%s\n", m.EventID, m.OrderID, m.Problem)
	}
	p.printf("%d audited events, %d events on the broker, %d mismatches\n", len(audited), len(onBroker), len(found))
	if p.err != nil {
		return p.err
	}
	if len(found) > 0 {
		return errMismatches
	}
	return nil
}

// readUntilQuiet's ends: how long it waits for one more event before it
// takes the broker's retained events as all read, and how long for the
// first one (a broker's first fetch can be slow).
const (
	quiet      = 2 * time.Second
	quietFirst = 10 * time.Second
)

// readUntilQuiet reads everything an external broker retains (Kafka's
// topic, Redis's stream) from its start, until it delivers nothing more
// for a while: these brokers do not say where their end is as JetStream does.
func readUntilQuiet(ctx context.Context, cfg app.Config) (map[uuid.UUID]ordersvc.BrokerEvent, error) {
	var mu sync.Mutex
	out := map[uuid.UUID]ordersvc.BrokerEvent{}
	last := time.Now()
	started := false
	stop, err := app.SubscribeBroker(ctx, cfg, broker.SubscribeOptions{FromStart: true}, func(d broker.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		last, started = time.Now(), true
		if d.Err != nil {
			return
		}
		if id, err := uuid.Parse(d.Event.ID); err == nil {
			out[id] = ordersvc.BrokerEvent{Type: d.Event.Type, OrderID: d.Event.Subject, Time: d.Event.Time}
		}
	})
	if err != nil {
		return nil, err
	}
	defer stop()
	for {
		mu.Lock()
		idle, wait := time.Since(last), quiet
		if !started {
			wait = quietFirst
		}
		mu.Unlock()
		if idle >= wait {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read the broker (it kept delivering, or stalled; narrow --since or raise --timeout): %w", ctx.Err())
		case <-time.After(wait - idle):
		}
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	return out, nil
}

// readStream reads every event the stream holds, up to its last message at
// the time of the call.
func readStream(ctx context.Context, url string, cfg natsjs.Config) (map[uuid.UUID]ordersvc.BrokerEvent, error) {
	nc, err := nats.Connect(url, natsjs.ConnectOptions(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", app.RedactURL(url), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return map[uuid.UUID]ordersvc.BrokerEvent{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", cfg.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", cfg.Stream, err)
	}
	out := map[uuid.UUID]ordersvc.BrokerEvent{}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return out, nil
	}
	done := make(chan struct{})
	var closeOnce bool
	stop, err := natsjs.Subscribe(ctx, nc, cfg, natsjs.SubscribeOptions{}, func(d natsjs.Delivery) {
		if d.Err == nil {
			if id, err := uuid.Parse(d.Event.ID); err == nil {
				out[id] = ordersvc.BrokerEvent{Type: d.Event.Type, OrderID: d.Event.Subject, Time: d.Event.Time}
			}
		}
		if d.StreamSeq >= last && !closeOnce {
			closeOnce = true
			close(done)
		}
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-done:
		stop()
		return out, nil
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("read stream %s: %w", cfg.Stream, ctx.Err())
	}
}
