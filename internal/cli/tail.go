package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/app"
)

func (c *cli) tailCommand() *cobra.Command {
	var (
		asJSON, fromStart bool
		types             []string
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print events from the broker as they arrive",
		Long: `Subscribe to the broker and print each event as it arrives, until SIGINT or
SIGTERM: one readable line per event (time, type, subject, sequence and a
summary of its data), or with --json the CloudEvents JSON document as
published. It reads new events only unless --from-start is given.

With --broker embedded it reads the embedded NATS server of a running
herald serve or herald relay, at --embedded-nats-addr.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := c.config()
			if err := cfg.ValidateBroker(); err != nil {
				return err
			}
			for _, t := range types {
				if t == "" || strings.ContainsAny(t, " \t\r\n*>") {
					return usagef("--event-type %q is not an event type such as order.created", t)
				}
			}
			spec, _ := app.ParseBrokerURL(cfg.BrokerURL)
			var url string
			switch spec.Kind {
			case app.BrokerLog:
				return usagef("herald tail reads the broker; --broker log writes events to the standard output of herald serve instead")
			case app.BrokerWebhook:
				return usagef("herald tail reads the broker; a webhook endpoint receives the events instead")
			case app.BrokerEmbedded:
				url = "nats://" + cfg.EmbeddedNATSAddr
			case app.BrokerNATS:
				url = spec.URL
			case app.BrokerRabbitMQ:
				if fromStart {
					// From the start means reading the queue, which consumes it.
					return usagef("herald tail --from-start cannot read RabbitMQ without consuming its queue; tail new events instead")
				}
				return c.tailExternal(cmd.Context(), cfg, spec, &eventPrinter{w: c.stdout, json: asJSON},
					broker.SubscribeOptions{Types: types})
			default:
				return c.tailExternal(cmd.Context(), cfg, spec, &eventPrinter{w: c.stdout, json: asJSON},
					broker.SubscribeOptions{FromStart: fromStart, Types: types})
			}
			ncfg := app.NATSConfig(c.log)
			nc, err := nats.Connect(url, natsjs.ConnectOptions(ncfg)...)
			if err != nil {
				if spec.Kind == app.BrokerEmbedded {
					return fmt.Errorf("cannot reach the embedded NATS server at %s (is herald serve running with --embedded-nats-addr %s?): %w",
						cfg.EmbeddedNATSAddr, cfg.EmbeddedNATSAddr, err)
				}
				return fmt.Errorf("connect to NATS %s: %w", app.RedactURL(url), err)
			}
			defer nc.Close()

			ctx := cmd.Context()
			p := &eventPrinter{w: c.stdout, json: asJSON}
			stop, err := natsjs.Subscribe(ctx, nc, ncfg,
				natsjs.SubscribeOptions{DeliverNew: !fromStart, Types: types}, func(d natsjs.Delivery) {
					p.print(broker.Delivery{Event: d.Event, Err: d.Err, Body: d.Body, Where: d.Subject, Stored: d.Stored})
				})
			if err != nil {
				return err
			}
			from := "new events"
			if fromStart {
				from = "every event from the start"
			}
			c.log.Info("tailing stream "+ncfg.Stream+": "+from+"; stop with Ctrl-C", "nats", app.RedactURL(nc.ConnectedUrl()))
			<-ctx.Done()
			stop()
			return p.err
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&asJSON, "json", false, "print each event's CloudEvents JSON, one document per line")
	fs.BoolVar(&fromStart, "from-start", false, "print the events already in the stream first")
	fs.StringSliceVar(&types, "event-type", nil, "print only events of these types (repeat or separate with commas)")
	return cmd
}

// eventPrinter writes deliveries, one line each. Subscribe calls it from one
// goroutine at a time.
type eventPrinter struct {
	w    io.Writer
	json bool
	err  error // the first write error
}

// tailExternal tails a broker other than NATS until ctx ends.
func (c *cli) tailExternal(ctx context.Context, cfg app.Config, spec app.BrokerSpec, p *eventPrinter, opts broker.SubscribeOptions) error {
	var mu sync.Mutex // adapters may deliver from more than one goroutine
	stop, err := app.SubscribeBroker(ctx, cfg, opts, func(d broker.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		p.print(d)
	})
	if err != nil {
		return fmt.Errorf("read the %s broker %s: %w", spec.Kind, app.RedactURL(spec.URL), err)
	}
	c.log.Info("tailing the " + spec.Kind.String() + " broker; stop with Ctrl-C")
	<-ctx.Done()
	stop()
	mu.Lock()
	defer mu.Unlock()
	return p.err
}

func (p *eventPrinter) print(d broker.Delivery) {
	if p.err != nil {
		return
	}
	var line string
	switch {
	case p.json:
		var b bytes.Buffer
		if err := json.Compact(&b, d.Body); err != nil {
			b.Reset()
			b.Write(bytes.ReplaceAll(d.Body, []byte("\n"), nil))
		}
		line = b.String()
	case d.Err != nil:
		line = fmt.Sprintf("%s  ?  %s  (not a Herald CloudEvent: %v)", formatTime(d.Stored), d.Where, d.Err)
	default:
		e := d.Event
		line = fmt.Sprintf("%s  %-24s  %s  #%d  %s", formatTime(e.Time), e.Type, e.Subject, e.Sequence, Summary(e.Type, e.Data))
	}
	if _, err := fmt.Fprintln(p.w, strings.TrimRight(line, " ")); err != nil {
		p.err = err
	}
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// Summary renders an event's data as a short line: the fields that say what
// happened, by event type, or a few scalar fields of an unknown type.
func Summary(eventType string, data json.RawMessage) string {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return oneLine(string(data), 80)
	}
	str := func(k string) string {
		switch v := m[k].(type) {
		case nil:
			return ""
		case string:
			return v
		default:
			return fmt.Sprint(v)
		}
	}
	change := func() string {
		s := str("from") + " → " + str("to")
		if m["automatic"] == true {
			s += " (automatic)"
		}
		if r := str("reason"); r != "" {
			s += fmt.Sprintf(" reason=%q", oneLine(r, 60))
		}
		return s
	}
	switch eventType {
	case "order.created":
		items, _ := m["line_items"].([]any)
		kinds := make([]string, 0, len(items))
		for _, it := range items {
			if li, ok := it.(map[string]any); ok {
				kinds = append(kinds, fmt.Sprint(li["product_type"]))
			}
		}
		return fmt.Sprintf("customer=%s total=%s %s items=%d (%s)",
			str("customer_id"), str("total_amount"), str("currency"), len(items), strings.Join(kinds, ", "))
	case "order.payment_confirmed":
		return fmt.Sprintf("payment=%s amount=%s %s", str("payment_id"), str("amount"), str("currency"))
	case "order.status_changed":
		return "order " + change()
	case "line_item.status_changed":
		// UUIDv7s begin with a timestamp: their end tells items apart.
		id := str("line_item_id")
		if len(id) > 12 {
			id = "…" + id[len(id)-12:]
		}
		return fmt.Sprintf("item=%s %s %s: %s", id, str("product_type"), str("product_id"), change())
	}
	keys := make([]string, 0, len(m))
	for k, v := range m {
		switch v.(type) {
		case string, json.Number, bool:
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, 4)
	for _, k := range keys {
		if len(parts) == cap(parts) {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, k+"="+oneLine(str(k), 40))
	}
	return strings.Join(parts, " ")
}
