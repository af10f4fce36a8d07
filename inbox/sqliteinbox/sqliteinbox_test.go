package sqliteinbox_test

import (
	"context"
	"database/sql"
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/inboxtest"
	"github.com/heraldhq/herald/inbox/sqliteinbox"
	"github.com/heraldhq/herald/internal/testdb"
)

// harness runs the conformance suite on a database file of its own per
// test, with the consumer table applied beside the inbox.
var harness = inboxtest.Harness[*sql.Tx]{
	Fresh: func(t testing.TB) string { return testdb.SQLitePath(t) },
	Open: func(ctx context.Context, path string) (inbox.Driver[*sql.Tx], func(), error) {
		d, err := sqliteinbox.Open(path, sqliteinbox.Config{})
		if err != nil {
			return nil, nil, err
		}
		closeFn := func() { _ = d.Close() }
		if err := d.Migrate(ctx); err != nil {
			closeFn()
			return nil, nil, err
		}
		_, err = d.DB().ExecContext(ctx, `CREATE TABLE IF NOT EXISTS applied (
			pos INTEGER PRIMARY KEY AUTOINCREMENT,
			aggregate_id TEXT NOT NULL, sequence INTEGER NOT NULL, event_id TEXT NOT NULL)`)
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		return d, closeFn, nil
	},
	Record: func(ctx context.Context, tx *sql.Tx, ev inbox.Event) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO applied (aggregate_id, sequence, event_id) VALUES (?, ?, ?)`,
			ev.Subject, ev.Sequence, ev.ID)
		return err
	},
	Applied: func(ctx context.Context, d inbox.Driver[*sql.Tx]) ([]inboxtest.Applied, error) {
		rows, err := d.(*sqliteinbox.Driver).DB().QueryContext(ctx, `SELECT aggregate_id, sequence, event_id FROM applied ORDER BY pos`)
		if err != nil {
			return nil, err
		}
		defer func() { _ = rows.Close() }()
		var out []inboxtest.Applied
		for rows.Next() {
			var a inboxtest.Applied
			if err := rows.Scan(&a.AggregateID, &a.Sequence, &a.EventID); err != nil {
				return nil, err
			}
			out = append(out, a)
		}
		return out, rows.Err()
	},
}

func TestMain(m *testing.M) {
	inboxtest.Child(harness)
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	inboxtest.Run(t, harness)
}
