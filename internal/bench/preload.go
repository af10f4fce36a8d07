package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// backlog describes a preloaded backlog: Events events over Aggregates
// aggregates, written round robin (event i belongs to aggregate i mod
// Aggregates and has sequence i div Aggregates + 1), the way many orders
// progressing side by side fill an outbox.
type backlog struct {
	Events, Aggregates int
	Prefix             string // aggregate ids are Prefix + a number
}

func newBacklog(events, aggregates int) backlog {
	return backlog{Events: events, Aggregates: max(min(aggregates, events), 1), Prefix: "bench-" + randomHex(4) + "-"}
}

// aggregateID is the id of aggregate a.
func (b backlog) aggregateID(a int) string { return fmt.Sprintf("%s%07d", b.Prefix, a) }

// expected is how many events aggregate a has.
func (b backlog) expected(a int) int64 {
	n := b.Events / b.Aggregates
	if a < b.Events%b.Aggregates {
		n++
	}
	return int64(n)
}

// expect tells v what the backlog must publish.
func (b backlog) expect(v *Verifier) {
	for a := range b.Aggregates {
		v.SetExpected(b.aggregateID(a), b.expected(a))
	}
}

var benchEventTypes = []string{"order.created", "order.payment_confirmed", "order.status_changed", "line_item.status_changed"}

const benchTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// benchPayload is a payload of the size and shape of a status change.
func benchPayload(aggID string, seq int64) string {
	return fmt.Sprintf(`{"order_id":%q,"customer_id":"c-42","line_item_id":"0190b6a2-7c1e-7d2a-9f0e-3b1f2c4d5e6f",`+
		`"product_id":"p-1","product_type":"physical","quantity":2,"unit_price":1999,"amount":3998,"currency":"EUR",`+
		`"from":"preparing","to":"ready_to_ship","reason":"","actor":"api","automatic":false,"version":%d}`, aggID, seq)
}

// row returns event i of the backlog.
func (b backlog) row(i int) (aggID, eventType string, seq int64) {
	a := i % b.Aggregates
	return b.aggregateID(a), benchEventTypes[(i/b.Aggregates)%len(benchEventTypes)], int64(i/b.Aggregates + 1)
}

// preload writes the backlog into d's outbox, with the sequence counters
// consistent with it, and refreshes the planner's statistics.
func (b backlog) preload(ctx context.Context, d *database) error {
	if d.pool != nil {
		return b.preloadPostgres(ctx, d)
	}
	return b.preloadSQLite(ctx, d)
}

// preloadPostgres COPYs the events, fills order_outbox_sequences from them
// and runs VACUUM ANALYZE, so that the relay and the plain loop both start on
// a table with fresh statistics and visibility map.
func (b backlog) preloadPostgres(ctx context.Context, d *database) error {
	var n int64
	if err := d.pool.QueryRow(ctx, "SELECT count(*) FROM order_outbox").Scan(&n); err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("bench: the outbox holds %d events already; use --fresh-schema or an empty schema", n)
	}
	i := 0
	headers := `{"traceparent":"` + benchTraceparent + `"}`
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= b.Events {
			return nil, nil
		}
		agg, typ, seq := b.row(i)
		i++
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		return []any{id, "order", agg, typ, benchPayload(agg, seq), headers, seq}, nil
	})
	cols := []string{"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers", "sequence"}
	if _, err := d.pool.CopyFrom(ctx, pgx.Identifier{"order_outbox"}, cols, src); err != nil {
		return fmt.Errorf("bench: preload: copy: %w", err)
	}
	for _, q := range []string{
		`INSERT INTO order_outbox_sequences (aggregate_type, aggregate_id, last_sequence)
		 SELECT aggregate_type, aggregate_id, max(sequence) FROM order_outbox GROUP BY 1, 2
		 ON CONFLICT (aggregate_type, aggregate_id)
		 DO UPDATE SET last_sequence = greatest(order_outbox_sequences.last_sequence, excluded.last_sequence)`,
		"VACUUM ANALYZE order_outbox",
		"VACUUM ANALYZE order_outbox_sequences",
	} {
		if _, err := d.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("bench: preload: %w", err)
		}
	}
	return nil
}

// sqliteRowsPerInsert is how many events one INSERT statement writes (10
// parameters each, well under SQLite's limit of 32766).
const sqliteRowsPerInsert = 500

// preloadSQLite inserts the events in one transaction, by multi-row
// INSERTs, with the head flag set on each aggregate's first event (the file
// is fresh), then fills the sequence counters and runs ANALYZE.
func (b backlog) preloadSQLite(ctx context.Context, d *database) error {
	db := d.sq.DB()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int64
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM order_outbox").Scan(&n); err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("bench: the outbox holds %d events already", n)
	}
	const head = `INSERT INTO order_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, next_attempt_at, created_at, head) VALUES `
	now := time.Now().UnixMicro()
	headers := `{"traceparent":"` + benchTraceparent + `"}`
	var sb strings.Builder
	args := make([]any, 0, 10*sqliteRowsPerInsert)
	for start := 0; start < b.Events; start += sqliteRowsPerInsert {
		end := min(start+sqliteRowsPerInsert, b.Events)
		sb.Reset()
		sb.WriteString(head)
		args = args[:0]
		for i := start; i < end; i++ {
			if i > start {
				sb.WriteByte(',')
			}
			sb.WriteString("(?,?,?,?,?,?,?,?,?,?)")
			agg, typ, seq := b.row(i)
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			isHead := 0
			if seq == 1 {
				isHead = 1
			}
			args = append(args, id.String(), "order", agg, typ, benchPayload(agg, seq), headers, seq, now, now, isHead)
		}
		if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
			return fmt.Errorf("bench: preload: insert: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO order_outbox_sequences (aggregate_type, aggregate_id, last_sequence)
		SELECT aggregate_type, aggregate_id, max(sequence) FROM order_outbox GROUP BY 1, 2
		ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET last_sequence = max(last_sequence, excluded.last_sequence)`); err != nil {
		return fmt.Errorf("bench: preload: sequences: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("bench: preload: commit: %w", err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("bench: preload: analyze: %w", err)
	}
	return nil
}
