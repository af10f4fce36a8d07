package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
)

// legacyVersionTable is where Herald recorded the outbox schema's version
// before outboxes had names. An outbox's version table is now named after
// it, so Herald renames the old table before it migrates or reports; the
// outbox's own tables kept their names (order_outbox, …) and need nothing.
const legacyVersionTable = "herald_outbox_migrations"

// versionTable is the orders outbox's version table today.
var versionTable = func() string {
	n, err := outbox.NamesOf(ordersvc.OutboxName)
	if err != nil {
		panic(err) // a constant name
	}
	return n.Migrations
}()

// renameLegacyPostgres renames the old version table in the pool's current
// schema, if it is there. Two processes starting at once are safe: each
// renames before it migrates, and the rename of the second finds nothing.
func renameLegacyPostgres(pool *pgxpool.Pool) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := pool.Exec(ctx, "ALTER TABLE IF EXISTS "+legacyVersionTable+" RENAME TO "+versionTable)
		if err != nil {
			return fmt.Errorf("rename the outbox's version table %s to %s: %w", legacyVersionTable, versionTable, err)
		}
		return nil
	}
}

// renameLegacySQLite does the same on SQLite, whose ALTER TABLE has no IF
// EXISTS: it looks first, in a write transaction.
func renameLegacySQLite(db *sql.DB) func(context.Context) error {
	return func(ctx context.Context) (err error) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				err = errors.Join(fmt.Errorf("rename the outbox's version table %s to %s: %w", legacyVersionTable, versionTable, err), tx.Rollback())
			}
		}()
		var n int
		err = tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", legacyVersionTable).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err = tx.ExecContext(ctx, "ALTER TABLE "+legacyVersionTable+" RENAME TO "+versionTable); err != nil {
				return err
			}
		}
		return tx.Commit()
	}
}
