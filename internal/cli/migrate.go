package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/outbox/migration"
)

func (c *cli) migrateCommand() *cobra.Command {
	var status bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply (or with --status, list) the schema migrations",
		Long: `Apply the pending schema migrations of the outbox and of the orders tables,
or with --status list every migration and whether it is applied.

With --status it exits 0 when the schema is up to date and 3 when migrations
are pending (1 when the database cannot be read), so that a deploy script can
test it.

Migrating is safe to run concurrently: on PostgreSQL, migrators of one schema
take turns.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if status {
				return c.withExisting(cmd.Context(), false, func(ctx context.Context, db *app.Database) error {
					ms, err := db.MigrationStatus(ctx)
					if err != nil {
						return err
					}
					return writeMigrations(c.stdout, ms)
				})
			}
			return c.withDatabase(cmd.Context(), func(ctx context.Context, db *app.Database) error {
				return migrate(ctx, c.stdout, db)
			})
		},
	}
	cmd.Flags().BoolVar(&status, "status", false, "list the migrations and whether each is applied, and change nothing")
	return cmd
}

// withDatabase opens the database of the settings for fn and closes it,
// creating it if need be (herald migrate).
func (c *cli) withDatabase(ctx context.Context, fn func(context.Context, *app.Database) error) error {
	return c.openDatabase(ctx, app.OpenDatabase, fn)
}

// withExisting opens the database for an operator command, which refuses a
// database that does not exist and, with tables, one without Herald's
// tables, instead of creating one as a side effect.
func (c *cli) withExisting(ctx context.Context, tables bool, fn func(context.Context, *app.Database) error) error {
	return c.openDatabase(ctx, func(ctx context.Context, cfg app.Config) (*app.Database, error) {
		return app.OpenExisting(ctx, cfg, tables)
	}, fn)
}

func (c *cli) openDatabase(ctx context.Context, open func(context.Context, app.Config) (*app.Database, error), fn func(context.Context, *app.Database) error) error {
	cfg := c.config()
	if err := cfg.ValidateDatabase(); err != nil {
		return err
	}
	db, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	err = fn(ctx, db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// migrate applies the pending migrations and reports each one it applied.
func migrate(ctx context.Context, w io.Writer, db *app.Database) error {
	before, err := db.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	after, err := db.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	wasApplied := map[string]bool{}
	for _, m := range before {
		wasApplied[fmt.Sprint(m.Set, m.Version)] = m.Applied()
	}
	p := &printer{w: w}
	n := 0
	for _, m := range after {
		if m.Applied() && !wasApplied[fmt.Sprint(m.Set, m.Version)] {
			p.printf("applied %s %d %s\n", m.Set, m.Version, m.Name)
			n++
		}
	}
	if n == 0 {
		p.printf("the schema is up to date: no migration to apply\n")
	} else {
		p.printf("applied %s; the schema is up to date\n", plural(n, "migration"))
	}
	return p.err
}

// writeMigrations prints one line per migration and a summary.
func writeMigrations(w io.Writer, ms []app.Migration) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := &printer{w: tw}
	p.printf("SET\tVERSION\tNAME\tSTATUS\n")
	for _, m := range ms {
		state := "pending"
		if m.Applied() {
			state = "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
		}
		p.printf("%s\t%d\t%s\t%s\n", m.Set, m.Version, m.Name, state)
	}
	if err := errors.Join(p.err, tw.Flush()); err != nil {
		return err
	}
	p = &printer{w: w}
	pending := migration.Pending(ms)
	if pending == 0 {
		p.printf("the schema is up to date\n")
	} else {
		p.printf("%s pending: run herald migrate\n", plural(pending, "migration"))
	}
	if p.err == nil && pending > 0 {
		return errPending
	}
	return p.err
}

// plural renders n things: "1 migration", "2 migrations".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
