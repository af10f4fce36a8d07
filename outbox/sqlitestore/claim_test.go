package sqlitestore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestClaimTakesHeadsInWriteOrder(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	enqueue(t, d, ev("order", "a", "x"), ev("order", "a", "y"), ev("order", "b", "x"))
	enqueue(t, d, ev("order", "c", "x"), ev("order", "b", "y"), ev("order", "a", "z"))

	b := claim(t, d, outbox.ClaimParams{})
	if got := keys(b.Records()); got != "a/1 b/1 c/1" {
		t.Fatalf("first claim %q, want heads a/1 b/1 c/1", got)
	}
	finish(t, b, published)

	b = claim(t, d, outbox.ClaimParams{Limit: 1})
	if got := keys(b.Records()); got != "a/2" {
		t.Fatalf("limit 1: %q, want a/2", got)
	}
	if err := b.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	b = claim(t, d, outbox.ClaimParams{})
	if got := keys(b.Records()); got != "a/2 b/2" {
		t.Fatalf("second claim %q, want a/2 b/2 (release gave a/2 back)", got)
	}
	finish(t, b, published)
	b = claim(t, d, outbox.ClaimParams{})
	if got := keys(b.Records()); got != "a/3" {
		t.Fatalf("third claim %q, want a/3", got)
	}
	finish(t, b, published)
	b = claim(t, d, outbox.ClaimParams{})
	if len(b.Records()) != 0 {
		t.Fatalf("drained outbox claimed %q", keys(b.Records()))
	}
	if err := b.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, d, `SELECT count(*) FROM {{outbox}}`); n != 0 {
		t.Fatalf("%d events left", n)
	}
}

func TestFinishAppliesEveryOutcome(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	c := newClock(d)
	enqueue(t, d, ev("order", "a", "x"), ev("order", "b", "x"), ev("order", "c", "x"), ev("order", "c", "y"))
	created := c.Now()
	c.Advance(time.Second)
	failedAt := c.Now()

	b := claim(t, d, outbox.ClaimParams{})
	if got := keys(b.Records()); got != "a/1 b/1 c/1" {
		t.Fatalf("claimed %q", got)
	}
	deadID := b.Records()[2].ID
	finish(t, b, published, retry(time.Minute), deadLet)

	if n := count(t, d, `SELECT count(*) FROM {{outbox}} WHERE aggregate_id = 'a'`); n != 0 {
		t.Errorf("published event still in the outbox")
	}
	var (
		attempts              int
		lastErr               string
		nextAt, firstFailedAt int64
	)
	if err := d.DB().QueryRow(sqlf(d, `SELECT attempts, last_error, next_attempt_at, first_failed_at
		FROM {{outbox}} WHERE aggregate_id = 'b'`)).Scan(&attempts, &lastErr, &nextAt, &firstFailedAt); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || lastErr != "timeout" || nextAt != c.Now().Add(time.Minute).UnixMicro() ||
		firstFailedAt != c.Now().UnixMicro() {
		t.Errorf("retried row: attempts %d, error %q, next %d, first failed %d", attempts, lastErr, nextAt, firstFailedAt)
	}

	if n := count(t, d, `SELECT count(*) FROM {{outbox}} WHERE id = ?`, deadID.String()); n != 0 {
		t.Errorf("dead-lettered event is still in the outbox")
	}
	dls, err := d.ListDeadLetters(context.Background(), outbox.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if dl.EventID != deadID || dl.AggregateID != "c" || dl.Sequence != 1 || dl.EventType != "x" ||
		dl.Attempts != 1 || dl.Error != "broker said no" || string(dl.Payload) != `{"aggregate":"c"}` ||
		!dl.CreatedAt.Equal(created) || !dl.FirstFailedAt.Equal(c.Now()) || !dl.MovedAt.Equal(c.Now()) ||
		dl.State() != outbox.DeadLetterOpen {
		t.Errorf("dead letter = %+v", dl)
	}

	// The retried event is not due for a minute; c/2 is parked behind c/1.
	b = claim(t, d, outbox.ClaimParams{})
	if len(b.Records()) != 0 {
		t.Fatalf("claimed %q before the retry was due", keys(b.Records()))
	}
	_ = b.Release(context.Background())
	c.Advance(time.Minute)
	b = claim(t, d, outbox.ClaimParams{})
	if got := keys(b.Records()); got != "b/1" {
		t.Fatalf("after the delay: %q, want b/1", got)
	}
	r := b.Records()[0]
	if r.Attempts != 1 || r.LastError != "timeout" || r.FirstFailedAt.IsZero() {
		t.Fatalf("retried record = %+v", r)
	}
	// A second failure keeps the first failure time; the dead letter
	// counts every attempt.
	c.Advance(time.Second)
	finish(t, b, deadLet)
	dl2, err := d.ListDeadLetters(context.Background(), outbox.DeadLetterFilter{AggregateID: "b"})
	if err != nil || len(dl2) != 1 {
		t.Fatalf("dead letters of b: %v, %v", dl2, err)
	}
	if dl2[0].Attempts != 2 || !dl2[0].FirstFailedAt.Equal(failedAt) {
		t.Fatalf("dead letter of b: attempts %d, first failed %v", dl2[0].Attempts, dl2[0].FirstFailedAt)
	}
}

// TestFinishIsAtomic makes the last statement of a Finish fail and checks
// that none of its outcomes were kept (G6).
func TestFinishIsAtomic(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	enqueue(t, d, ev("order", "a", "x"), ev("order", "b", "x"), ev("order", "poison", "x"))
	if _, err := d.DB().Exec(sqlf(d, `CREATE TRIGGER fail_delete BEFORE DELETE ON {{outbox}}
		WHEN old.aggregate_id = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)); err != nil {
		t.Fatal(err)
	}
	b := claim(t, d, outbox.ClaimParams{})
	if got := keys(b.Records()); got != "a/1 b/1 poison/1" {
		t.Fatalf("claimed %q", got)
	}
	err := b.Finish(context.Background(), []outbox.Outcome{deadLet, retry(time.Hour), published})
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Finish = %v, want the injected failure", err)
	}
	if err := b.Release(context.Background()); err != nil {
		t.Fatalf("Release after a failed Finish: %v", err)
	}
	if n := count(t, d, `SELECT count(*) FROM {{outbox}} WHERE attempts = 0 AND last_error IS NULL`); n != 3 {
		t.Errorf("outbox has %d untouched events, want 3", n)
	}
	if n := count(t, d, `SELECT count(*) FROM {{dlq}}`); n != 0 {
		t.Errorf("DLQ has %d rows, want 0", n)
	}
	// The events are claimable again.
	b = claim(t, d, outbox.ClaimParams{})
	defer func() { _ = b.Release(context.Background()) }()
	if got := keys(b.Records()); got != "a/1 b/1 poison/1" {
		t.Fatalf("claim after the failed finish: %q", got)
	}
}

func TestFinishRefusesBadOutcomes(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	enqueue(t, d, ev("order", "a", "x"), ev("order", "b", "x"))
	b := claim(t, d, outbox.ClaimParams{})
	if err := b.Finish(context.Background(), []outbox.Outcome{published}); err == nil {
		t.Fatal("Finish with 1 outcome for 2 events succeeded")
	}
	if err := b.Finish(context.Background(), []outbox.Outcome{published, {Kind: 99}}); err == nil {
		t.Fatal("Finish with an unknown outcome succeeded")
	}
	finish(t, b, published)
	if err := b.Finish(context.Background(), []outbox.Outcome{published, published}); err == nil {
		t.Fatal("second Finish succeeded")
	}
	if err := b.Release(context.Background()); err != nil {
		t.Fatalf("Release after Finish: %v", err)
	}
	if n := count(t, d, `SELECT count(*) FROM {{outbox}}`); n != 0 {
		t.Fatalf("%d events left", n)
	}
}

func queryPlan(t *testing.T, d *sqlitestore.Driver, query string, args ...any) []string {
	t.Helper()
	rows, err := d.DB().Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestClaimQueryPlan: the claim reads the partial index of due heads in
// order (no scan of the outbox, no sort) and probes the other indexes, those
// of its own outbox when two share the database.
func TestClaimQueryPlan(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	for _, d := range []*sqlitestore.Driver{openDriver(t, path), openNamed(t, path, "order_outbox")} {
		for name, q := range map[string]string{"park": sqlitestore.ClaimSQL(d), "move on": sqlitestore.ClaimMoveOnSQL(d)} {
			name = d.Names().Name + ": " + name
			plan := queryPlan(t, d, q, 0, 500)
			text := strings.Join(plan, "\n")
			t.Logf("%s:\n%s", name, text)
			if !strings.Contains(text, sqlf(d, "SEARCH o USING INDEX {{outbox}}_due_heads (next_attempt_at<?)")) ||
				!strings.Contains(text, "SEARCH p USING COVERING INDEX") ||
				strings.Contains(text, "SCAN") || strings.Contains(text, "TEMP B-TREE") {
				t.Errorf("%s: plan\n%s", name, text)
			}
			if strings.HasSuffix(name, "park") && !strings.Contains(text, sqlf(d, "SEARCH d USING INDEX {{dlq}}_open ")) {
				t.Errorf("%s: the parking check does not use the open dead letters index:\n%s", name, text)
			}
		}
	}
}

// TestClaimHoldsWriteLock checks that a second claim, from another handle
// on the same file as a second process would have, waits for the first
// batch and then sees what it left.
func TestClaimHoldsWriteLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := testdb.SQLitePath(t)
	d1 := openDriver(t, path)
	d2 := openDriver(t, path)
	enqueue(t, d1, ev("order", "a", "x"), ev("order", "a", "y"), ev("order", "b", "x"))

	b1 := claim(t, d1, outbox.ClaimParams{})
	if got := keys(b1.Records()); got != "a/1 b/1" {
		t.Fatalf("first claim %q", got)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := d2.Claim(short, outbox.ClaimParams{Limit: 10})
	cancel()
	if err == nil {
		t.Fatal("a second claim succeeded while the first batch held the write lock")
	}

	got := make(chan string, 1)
	go func() {
		b2, err := d2.Claim(ctx, outbox.ClaimParams{Limit: 10})
		if err != nil {
			got <- err.Error()
			return
		}
		got <- keys(b2.Records())
		_ = b2.Release(ctx)
	}()
	select {
	case s := <-got:
		t.Fatalf("second claim returned %q while the first batch was held", s)
	case <-time.After(100 * time.Millisecond):
	}
	finish(t, b1, published)
	if s := <-got; s != "a/2" {
		t.Fatalf("second claim after finish: %q, want a/2", s)
	}
}

// TestBatchOutlivesClaimContext: a relay stopping gracefully cancels the
// context it claimed with, then finishes the batch with another one.
func TestBatchOutlivesClaimContext(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	enqueue(t, d, ev("order", "a", "x"))
	ctx, cancel := context.WithCancel(context.Background())
	b, err := d.Claim(ctx, outbox.ClaimParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(20 * time.Millisecond) // give database/sql time to react to the cancel
	if err := b.Finish(context.Background(), []outbox.Outcome{published}); err != nil {
		t.Fatalf("Finish after the claim context ended: %v", err)
	}
	if n := count(t, d, `SELECT count(*) FROM {{outbox}}`); n != 0 {
		t.Fatalf("%d events left", n)
	}
}

func TestClaimWithDoneContext(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	enqueue(t, d, ev("order", "a", "x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Claim(ctx, outbox.ClaimParams{Limit: 10}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Claim with a done context: %v", err)
	}
	// The lock is free: a claim succeeds at once.
	short, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	b, err := d.Claim(short, outbox.ClaimParams{Limit: 10})
	if err != nil || len(b.Records()) != 1 {
		t.Fatalf("claim: %v", err)
	}
	finish(t, b, published)
}
