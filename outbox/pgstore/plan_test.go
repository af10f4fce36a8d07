package pgstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/outbox/pgstore"
)

// TestClaimPlan checks on 200k pending events that Claim walks the pos
// index and probes the other indexes per candidate (nested-loop anti joins),
// instead of hashing the whole table, in both the custom and the generic
// plan of the prepared statement.
func TestClaimPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200k rows")
	}
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	// 50k aggregates with 4 events each, 1 in 97 waiting for a retry, and
	// 3k dead letters of which a third are replayed.
	_, err := d.Pool().Exec(ctx, sqlOf(d, `
		INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, sequence,
			attempts, first_failed_at, next_attempt_at)
		SELECT gen_random_uuid(), 'order', 'agg' || (g % 50000), 'order.updated', '{"a": 1}', g / 50000 + 1,
			CASE WHEN g % 97 = 0 THEN 1 ELSE 0 END, CASE WHEN g % 97 = 0 THEN now() END,
			CASE WHEN g % 97 = 0 THEN now() + interval '1 hour' ELSE now() END
		FROM generate_series(0, 199999) g ORDER BY g;
		INSERT INTO {{dlq}} (event_id, aggregate_type, aggregate_id, event_type, payload, sequence,
			error_message, retry_count, created_at, first_failed_at, reprocessed, reprocessed_at)
		SELECT gen_random_uuid(), 'order', 'agg' || (g * 7 % 50000), 't', '{}', 1, 'x', 1, now(), now(),
			g % 3 = 0, CASE WHEN g % 3 = 0 THEN now() END
		FROM generate_series(0, 2999) g;
		ANALYZE {{outbox}};
		ANALYZE {{dlq}};`))
	if err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]string{"parking": pgstore.ClaimParkingSQL(d), "move-on": pgstore.ClaimMoveOnSQL(d)} {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			plan := explain(ctx, t, d, q, mode)
			t.Logf("%s, %s:\n%s", name, mode, plan)
			for _, bad := range []string{"Hash", "Seq Scan", "Sort"} {
				if strings.Contains(plan, bad) {
					t.Errorf("%s, %s: plan has a %s", name, mode, bad)
				}
			}
			want := []string{
				"Recursive Union", // the walk over aggregates
				sqlOf(d, "{{outbox}}_aggregate_sequence_key on {{outbox}} x"),
				"Tid Scan", // rows found, locked and deleted by ctid
				"rows=500", // it took a full batch
			}
			if name == "parking" {
				want = append(want, sqlOf(d, "{{dlq}}_open_aggregate_idx on {{dlq}} d"))
			}
			for _, w := range want {
				if !strings.Contains(plan, w) {
					t.Errorf("%s, %s: plan lacks %q", name, mode, w)
				}
			}
		}
	}
}

// explain runs the claim query for 500 events under EXPLAIN ANALYZE, as a
// prepared statement with plan_cache_mode set to mode, and rolls it back.
func explain(ctx context.Context, t *testing.T, d *pgstore.Driver, query, mode string) string {
	t.Helper()
	tx, err := d.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = "+mode); err != nil {
		t.Fatal(err)
	}
	// Prepared statements belong to the session, not the transaction.
	if _, err := tx.Exec(ctx, "PREPARE claim_plan(int, text, text) AS "+query); err != nil {
		t.Fatal(err)
	}
	rows, _ := tx.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE claim_plan(500, '', '')")
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DEALLOCATE claim_plan"); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
