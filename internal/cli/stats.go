package cli

import (
	"context"
	"errors"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/outbox"
)

func (c *cli) statsCommand() *cobra.Command {
	var (
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show the outbox backlog, the relay's lag and the dead-letter queue's size",
		Long: `Show the outbox backlog: events waiting to be published, how many of them are
being retried, the age of the oldest (the relay's lag), the number of open
dead letters, and the pending events parked behind them (waiting until they
are replayed or discarded).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.config().ValidateHealth(); err != nil {
				return err
			}
			return c.withStore(cmd.Context(), timeout, func(ctx context.Context, store outbox.Admin) error {
				st, err := store.Stats(ctx)
				if err != nil {
					return err
				}
				now := time.Now()
				// Judged from the database alone: the relays' recent
				// attempts and the broker belong to the processes that
				// run them (GET /api/v1/outbox/health).
				h := outbox.Assess(outbox.HealthInput{Stats: st, Now: now}, c.config().Health)
				if asJSON {
					return writeJSON(c.stdout, statsJSON{StatsResponse: httpapi.NewStats(st, now), Health: h})
				}
				return writeStats(c.stdout, st, h, now)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	addTimeout(cmd.Flags(), &timeout)
	c.s.addHealth(cmd.Flags(), false)
	return cmd
}

// statsJSON is herald stats --json: the figures as the API shows them, and
// the health verdict the database alone supports.
type statsJSON struct {
	httpapi.StatsResponse
	Health outbox.Health `json:"health"`
}

// lag is the age of the oldest pending event, zero when there is none.
func lag(st outbox.Stats, now time.Time) time.Duration {
	if st.OldestPending.IsZero() {
		return 0
	}
	return max(now.Sub(st.OldestPending), 0)
}

func writeStats(w io.Writer, st outbox.Stats, h outbox.Health, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := &printer{w: tw}
	p.printf("pending\t%d\n", st.Pending)
	p.printf("in retry\t%d\n", st.Retrying)
	if st.OldestPending.IsZero() {
		p.printf("oldest pending\t-\n")
		p.printf("lag\t0s\n")
	} else {
		p.printf("oldest pending\t%s\n", st.OldestPending.UTC().Format(time.RFC3339))
		p.printf("lag\t%s\n", lag(st, now).Round(time.Millisecond))
	}
	p.printf("dead letters\t%d\n", st.DeadLetters)
	p.printf("parked\t%d\n", st.Parked)
	p.printf("health\t%s\n", h.Verdict)
	for _, r := range h.Reasons {
		p.printf("\t%s\n", r)
	}
	return errors.Join(p.err, tw.Flush())
}
