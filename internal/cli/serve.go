package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/ordersvc"
)

func (c *cli) serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API and the relay",
		Long: `Run the HTTP API and the relay in one process.

It applies pending schema migrations first (unless --no-migrate), then serves
until SIGINT or SIGTERM: it stops accepting requests, lets those in flight
finish (up to --shutdown-timeout), lets the relay finish its batch in flight,
and closes the broker and the database.

With no --api-token or --admin-token it listens on loopback only, and it
refuses an address reachable from other machines.

GET /metrics is open to anyone who reaches the API's listener; with
its own address, --metrics-addr, it is served only there, where only your
Prometheus need reach it. The outbox figures it reports are read from the
database at most once every 5 seconds. The API holds as many connections
at once as --max-connections allows; more wait until one closes.

With --mode cdc (PostgreSQL only) its relay reads the events from the
write-ahead log through a replication slot (see herald relay --help), and
with --delete-in-tx each order change deletes its event rows in its own
transaction, so that the outbox table never grows; with --wal-messages it
writes its events as logical decoding messages instead of rows, the
cheapest write of the three.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.longRunningConfig(true)
			if err != nil {
				return err
			}
			return app.Run(cmd.Context(), cfg, app.Options{HTTP: true}, nil)
		},
	}
	c.s.addRelay(cmd.Flags())
	c.s.addMode(cmd.Flags())
	c.s.addWriters(cmd.Flags())
	c.s.addLifecycle(cmd.Flags())
	c.s.addHTTP(cmd.Flags())
	c.s.addHealth(cmd.Flags(), true)
	return cmd
}

func (c *cli) relayCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run the relay alone (several may run against one PostgreSQL)",
		Long: `Run only the relay: publish the outbox's events to the broker.

Several relays, on one machine or many, may run against one PostgreSQL
database to scale out; events of one order still reach the broker in order.
It applies pending schema migrations first (unless --no-migrate) and stops
gracefully on SIGINT or SIGTERM, finishing its batch in flight.

With --mode cdc (PostgreSQL only) it reads the events from the write-ahead log
through a replication slot instead of claiming rows: PostgreSQL needs
wal_level = logical and the role the REPLICATION attribute (it says so at start
otherwise). One relay streams the slot at a time; others started alongside wait
and take over when it stops. A slot keeps write-ahead log on the server until
its relay confirms it: when an outbox is no longer relayed by CDC, drop the slot
with --drop-slot (it refuses while a relay streams it).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.longRunningConfig(false)
			if err != nil {
				return err
			}
			if c.s.dropSlot {
				if err := app.DropSlot(cmd.Context(), cfg); err != nil {
					return err
				}
				slot := cfg.CDCSlot
				if slot == "" {
					slot = "herald_" + ordersvc.OutboxName
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "dropped the replication slot and publication %s\n", slot)
				return err
			}
			return app.Run(cmd.Context(), cfg, app.Options{}, nil)
		},
	}
	c.s.addRelay(cmd.Flags())
	c.s.addMode(cmd.Flags())
	cmd.Flags().BoolVar(&c.s.dropSlot, "drop-slot", false, "with --mode cdc: drop the replication slot and publication, then exit")
	c.s.addLifecycle(cmd.Flags())
	return cmd
}

// longRunningConfig checks the settings of serve (withHTTP) or relay.
func (c *cli) longRunningConfig(withHTTP bool) (app.Config, error) {
	cfg := c.config()
	errs := []error{cfg.ValidateDatabase(), cfg.ValidateBroker(), app.ValidateRelayConfig(cfg.Relay), cfg.ValidateHealth(), cfg.ValidateRelayMode()}
	if c.s.shutdownTimeout <= 0 {
		errs = append(errs, usagef("--shutdown-timeout must be positive, got %s", c.s.shutdownTimeout))
	}
	if withHTTP {
		if c.s.maxConnections == 0 { // 0 would mean the default to app.Config; ValidateHTTP refuses < 0
			errs = append(errs, usagef("--max-connections must be at least 1, got %d", c.s.maxConnections))
		}
		errs = append(errs, cfg.ValidateHTTP())
	}
	return cfg, errors.Join(errs...)
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// exactArgs requires n positional arguments, naming them in the error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s, got %d arguments", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}

// maxArgs allows at most n positional arguments.
func maxArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("%s takes %s, got %d arguments", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}
