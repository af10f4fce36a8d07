package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/outbox"
)

// Limits of dlq list: the API's, so that both page alike.
const (
	defaultDLQLimit = httpapi.DefaultDeadLettersLimit
	maxDLQLimit     = httpapi.MaxDeadLettersLimit
)

func (c *cli) dlqCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Operate the dead-letter queue: list, show, replay, discard, prune",
		Long: `Operate the dead-letter queue: the events that failed permanently or used up
their attempts. An aggregate's later events wait behind its dead letter until
it is replayed (published again, with its original id and sequence) or
discarded (resolved without publishing; the row stays as an audit record).`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(c.dlqListCommand(), c.dlqShowCommand(), c.dlqReplayCommand(), c.dlqDiscardCommand(),
		c.dlqPruneCommand())
	return cmd
}

// dlqFilter holds the filter flags of dlq list and dlq replay --all.
type dlqFilter struct {
	aggregateType, aggregateID, eventType string
}

func (f *dlqFilter) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.aggregateType, "aggregate-type", "", "only dead letters of this aggregate type (e.g. order)")
	fs.StringVar(&f.aggregateID, "aggregate-id", "", "only dead letters of this aggregate (e.g. an order id)")
	fs.StringVar(&f.eventType, "event-type", "", "only dead letters of this event type (e.g. order.created)")
}

func (f *dlqFilter) filter() outbox.DeadLetterFilter {
	return outbox.DeadLetterFilter{AggregateType: f.aggregateType, AggregateID: f.aggregateID, EventType: f.eventType}
}

// filterFlags names the fields of an outbox.DeadLetterFilter as the flags
// that set them.
var filterFlags = map[string]string{
	"State":         "state",
	"AggregateType": "aggregate-type",
	"AggregateID":   "aggregate-id",
	"EventType":     "event-type",
	"AfterID":       "after",
	"Limit":         "limit",
}

// checkFilter applies outbox.DeadLetterFilter.Validate, the rules of the
// drivers and the HTTP API, before anything is opened: a refused filter is
// a usage error naming the flag and its value.
func checkFilter(f outbox.DeadLetterFilter) error {
	var fe *outbox.FilterError
	if !errors.As(f.Validate(), &fe) {
		return nil
	}
	// A text as Go quotes it, so a control character shows as an escape
	// and never reaches the terminal; cut, as it may be long.
	values := map[string]string{
		"State": strconv.Quote(string(f.State)), "AggregateType": strconv.Quote(f.AggregateType),
		"AggregateID": strconv.Quote(f.AggregateID), "EventType": strconv.Quote(f.EventType),
		"AfterID": strconv.FormatInt(f.AfterID, 10), "Limit": strconv.Itoa(f.Limit),
	}
	msgs := make([]string, 0, len(fe.Fields))
	for _, e := range fe.Fields {
		name, ok := filterFlags[e.Field]
		if !ok {
			name = e.Field
		}
		v := values[e.Field]
		if r := []rune(v); len(r) > 40 {
			v = string(r[:39]) + "…"
		}
		msgs = append(msgs, fmt.Sprintf("--%s %s: %s", name, v, e.Message))
	}
	return usagef("%s", strings.Join(msgs, "; "))
}

func (c *cli) dlqListCommand() *cobra.Command {
	var (
		f       dlqFilter
		state   string
		after   int64
		limit   int
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter := f.filter()
			filter.State, filter.AfterID, filter.Limit = outbox.DeadLetterState(state), after, limit
			if err := checkFilter(filter); err != nil {
				return err
			}
			if limit < 1 || limit > maxDLQLimit {
				return usagef("--limit must be between 1 and %d, got %d", maxDLQLimit, limit)
			}
			return c.withStore(cmd.Context(), timeout, func(ctx context.Context, store outbox.Admin) error {
				dls, err := store.ListDeadLetters(ctx, filter)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(c.stdout, deadLettersJSON(dls))
				}
				return writeDeadLetterTable(c.stdout, dls, limit)
			})
		},
	}
	fs := cmd.Flags()
	f.add(fs)
	fs.StringVar(&state, "state", string(httpapi.DefaultDeadLetterState),
		"open, replayed, discarded, or all (every state); open by default, as the API's list")
	fs.Int64Var(&after, "after", 0, "list only dead letters with an id above this one (paging)")
	fs.IntVar(&limit, "limit", defaultDLQLimit, fmt.Sprintf("list at most this many (1-%d)", maxDLQLimit))
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	addTimeout(fs, &timeout)
	return cmd
}

func (c *cli) dlqShowCommand() *cobra.Command {
	var (
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one dead letter with its payload and error",
		Args:  exactArgs(1, "one dead-letter id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return c.withStore(cmd.Context(), timeout, func(ctx context.Context, store outbox.Admin) error {
				dl, err := store.GetDeadLetter(ctx, id)
				if err != nil {
					return deadLetterError(id, err)
				}
				if asJSON {
					return writeJSON(c.stdout, httpapi.NewDeadLetter(dl))
				}
				return writeDeadLetter(c.stdout, &dl)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	addTimeout(cmd.Flags(), &timeout)
	return cmd
}

func (c *cli) dlqReplayCommand() *cobra.Command {
	var (
		f       dlqFilter
		all     bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "replay {ID | --all [filters]}",
		Short: "Return dead letters to the outbox to be published again",
		Long: `Return a dead letter, or with --all every open one matching the filters, to
the outbox, exactly once, with its original event id and sequence. The relay
then publishes it and, after it, the aggregate's events that waited.`,
		Args: maxArgs(1, "at most one dead-letter id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return usagef("give a dead-letter id or --all, not both")
			case !all && len(args) == 0:
				return usagef("give a dead-letter id, or --all to replay every open dead letter matching the filters")
			case !all && (f != dlqFilter{}):
				return usagef("--aggregate-type, --aggregate-id and --event-type go with --all")
			}
			filter := f.filter()
			filter.State = outbox.DeadLetterOpen
			if err := checkFilter(filter); err != nil {
				return err
			}
			return c.withStore(cmd.Context(), timeout, func(ctx context.Context, store outbox.Admin) error {
				if all {
					n, err := store.ReplayDeadLetters(ctx, filter)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.stdout, "replayed %s\n", plural(n, "dead letter"))
					return err
				}
				id, err := parseID(args[0])
				if err != nil {
					return err
				}
				if err := store.ReplayDeadLetter(ctx, id); err != nil {
					return deadLetterError(id, err)
				}
				_, err = fmt.Fprintf(c.stdout, "replayed dead letter %d\n", id)
				return err
			})
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&all, "all", false, "replay every open dead letter matching the filters")
	f.add(fs)
	addTimeout(fs, &timeout)
	return cmd
}

func (c *cli) dlqDiscardCommand() *cobra.Command {
	var (
		reason  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "discard ID --reason TEXT",
		Short: "Resolve a dead letter without publishing it",
		Long: `Resolve a dead letter without publishing it. The row stays, with the reason,
as an audit record, and the aggregate's later events flow again.`,
		Args: exactArgs(1, "one dead-letter id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason is required: say why the event is dropped")
			}
			return c.withStore(cmd.Context(), timeout, func(ctx context.Context, store outbox.Admin) error {
				if err := store.DiscardDeadLetter(ctx, id, reason); err != nil {
					return deadLetterError(id, err)
				}
				_, err := fmt.Fprintf(c.stdout, "discarded dead letter %d\n", id)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the event is dropped, kept with the dead letter (required)")
	addTimeout(cmd.Flags(), &timeout)
	return cmd
}

func (c *cli) dlqPruneCommand() *cobra.Command {
	var (
		olderThan   time.Duration
		includeOpen bool
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "prune --older-than D [--include-open]",
		Short: "Delete resolved dead letters resolved more than D ago",
		Long: `Delete the dead letters that were replayed or discarded more than --older-than
ago (by the database's clock), in batches of 1000 rows per transaction, so a
large prune never holds locks for long. With --include-open, open dead letters
moved to the queue more than --older-than ago go too: their events are lost.
Prints how many it deleted.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("older-than") {
				return usagef("--older-than is required (e.g. --older-than 720h)")
			}
			if olderThan < 0 {
				return usagef("--older-than must not be negative, got %s", olderThan)
			}
			p := outbox.PruneParams{OlderThan: olderThan, IncludeOpen: includeOpen}
			return c.withStore(cmd.Context(), timeout, func(ctx context.Context, store outbox.Admin) error {
				n, err := store.PruneDeadLetters(ctx, p)
				if n > 0 || err == nil {
					if _, perr := fmt.Fprintf(c.stdout, "pruned %s\n", plural(n, "dead letter")); perr != nil && err == nil {
						err = perr
					}
				}
				return err
			})
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&olderThan, "older-than", 0, "delete dead letters resolved more than this long ago (required, e.g. 720h)")
	fs.BoolVar(&includeOpen, "include-open", false, "also delete open dead letters moved to the queue more than --older-than ago")
	addTimeout(fs, &timeout)
	return cmd
}

// addTimeout adds --timeout, the bound of one operator command.
func addTimeout(fs *pflag.FlagSet, d *time.Duration) {
	fs.DurationVar(d, "timeout", time.Minute, "give up after this long")
}

// withStore opens the database for fn, bounded by timeout.
func (c *cli) withStore(ctx context.Context, timeout time.Duration, fn func(context.Context, outbox.Admin) error) error {
	if timeout <= 0 {
		return usagef("--timeout must be positive, got %s", timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.withExisting(ctx, true, func(ctx context.Context, db *app.Database) error {
		return fn(ctx, db.Admin)
	})
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, usagef("%q is not a dead-letter id (a positive integer, as dlq list shows)", s)
	}
	return id, nil
}

// deadLetterError words the engine's errors for one dead letter.
func deadLetterError(id int64, err error) error {
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		return fmt.Errorf("dead letter %d not found", id)
	case errors.Is(err, outbox.ErrAlreadyResolved):
		var re *outbox.ResolvedError
		if errors.As(err, &re) {
			return fmt.Errorf("dead letter %d was already %s at %s", id, re.State, re.At.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("dead letter %d was already replayed or discarded", id)
	}
	return err
}

func deadLettersJSON(dls []outbox.DeadLetter) []httpapi.DeadLetter {
	out := make([]httpapi.DeadLetter, len(dls))
	for i := range dls {
		out[i] = httpapi.NewDeadLetter(dls[i])
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeDeadLetterTable(w io.Writer, dls []outbox.DeadLetter, limit int) error {
	if len(dls) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := &printer{w: tw}
	p.printf("ID\tSTATE\tEVENT TYPE\tAGGREGATE\tSEQ\tATTEMPTS\tMOVED AT\tERROR\n")
	for i := range dls {
		d := &dls[i]
		p.printf("%d\t%s\t%s\t%s %s\t%d\t%d\t%s\t%s\n",
			d.ID, d.State(), d.EventType, d.AggregateType, d.AggregateID, d.Sequence, d.Attempts,
			d.MovedAt.UTC().Format(time.RFC3339), oneLine(d.Error, 60))
	}
	if err := errors.Join(p.err, tw.Flush()); err != nil {
		return err
	}
	if len(dls) == limit {
		_, err := fmt.Fprintf(w, "(first %d shown; more with --after %d)\n", limit, dls[len(dls)-1].ID)
		return err
	}
	return nil
}

func writeDeadLetter(w io.Writer, d *outbox.DeadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := &printer{w: tw}
	row := func(k, v string) { p.printf("%s\t%s\n", k, v) }
	row("id", strconv.FormatInt(d.ID, 10))
	row("state", string(d.State()))
	row("event id", d.EventID.String())
	row("event type", d.EventType)
	row("aggregate", d.AggregateType+" "+d.AggregateID)
	row("sequence", strconv.FormatInt(d.Sequence, 10))
	if d.IdempotencyKey != "" {
		row("idempotency key", d.IdempotencyKey)
	}
	row("attempts", strconv.Itoa(d.Attempts))
	row("error", oneLine(d.Error, 0))
	row("created at", d.CreatedAt.UTC().Format(time.RFC3339Nano))
	row("first failed at", d.FirstFailedAt.UTC().Format(time.RFC3339Nano))
	row("moved at", d.MovedAt.UTC().Format(time.RFC3339Nano))
	if d.ReprocessedAt != nil {
		row("replayed at", d.ReprocessedAt.UTC().Format(time.RFC3339Nano))
	}
	if d.DiscardedAt != nil {
		row("discarded at", d.DiscardedAt.UTC().Format(time.RFC3339Nano))
		row("discard reason", d.DiscardReason)
	}
	if len(d.Headers) > 0 {
		keys := make([]string, 0, len(d.Headers))
		for k := range d.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("header "+k, d.Headers[k])
		}
	}
	if err := errors.Join(p.err, tw.Flush()); err != nil {
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, d.Payload, "  ", "  "); err != nil {
		pretty.Reset()
		pretty.Write(d.Payload)
	}
	_, err := fmt.Fprintf(w, "payload\n  %s\n", pretty.String())
	return err
}

// oneLine flattens s to one line, cut to max runes when max > 0.
func oneLine(s string, maxRunes int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); maxRunes > 0 && len(r) > maxRunes {
		return string(r[:maxRunes-1]) + "…"
	}
	return s
}
