package pginbox_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/inboxtest"
	"github.com/heraldhq/herald/inbox/pginbox"
	"github.com/heraldhq/herald/internal/testdb"
)

// harness runs the conformance suite on a schema of its own per test, with
// the consumer table applied beside the inbox.
var harness = inboxtest.Harness[pgx.Tx]{
	Fresh: func(t testing.TB) string {
		url, _ := testdb.PostgresSchema(t)
		return url
	},
	Open: func(ctx context.Context, url string) (inbox.Driver[pgx.Tx], func(), error) {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			return nil, nil, err
		}
		d, err := open(ctx, pool)
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		return d, pool.Close, nil
	},
	Record: func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO applied (aggregate_id, sequence, event_id) VALUES ($1, $2, $3)`,
			ev.Subject, ev.Sequence, ev.ID)
		return err
	},
	Applied: func(ctx context.Context, d inbox.Driver[pgx.Tx]) ([]inboxtest.Applied, error) {
		rows, err := d.(*pginbox.Driver).Pool().Query(ctx, `SELECT aggregate_id, sequence, event_id FROM applied ORDER BY pos`)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowToStructByPos[inboxtest.Applied])
	},
}

// open migrates an inbox on pool and creates the consumer table.
func open(ctx context.Context, pool *pgxpool.Pool) (*pginbox.Driver, error) {
	d, err := pginbox.New(pool, pginbox.Config{})
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(ctx); err != nil {
		return nil, err
	}
	_, err = pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS applied (
		pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		aggregate_id text NOT NULL, sequence bigint NOT NULL, event_id text NOT NULL)`)
	return d, err
}

func TestMain(m *testing.M) {
	inboxtest.Child(harness)
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	inboxtest.Run(t, harness)
}
