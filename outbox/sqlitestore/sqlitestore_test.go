package sqlitestore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newDriver opens and migrates a fresh database file for the test.
func newDriver(t testing.TB) *sqlitestore.Driver {
	t.Helper()
	return openDriver(t, testdb.SQLitePath(t))
}

func openDriver(t testing.TB, path string) *sqlitestore.Driver {
	t.Helper()
	d, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(d *sqlitestore.Driver) *clock {
	c := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	sqlitestore.SetClock(d, c.Now)
	return c
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func ev(aggType, aggID, typ string) outbox.Event {
	return outbox.Event{
		AggregateType: aggType,
		AggregateID:   aggID,
		Type:          typ,
		Payload:       json.RawMessage(`{"aggregate":"` + aggID + `"}`),
	}
}

func enqueue(t testing.TB, d *sqlitestore.Driver, events ...outbox.Event) []outbox.Enqueued {
	t.Helper()
	out, err := outbox.NewClient(d).Enqueue(context.Background(), events...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t testing.TB, d *sqlitestore.Driver, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.DB().QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// checkHeads asserts the head invariant: the flag is set exactly on the
// pending event with the lowest sequence of each aggregate.
func checkHeads(t testing.TB, d *sqlitestore.Driver) {
	t.Helper()
	if n := count(t, d, `SELECT count(*) FROM order_outbox AS o
		WHERE o.head <> NOT EXISTS (SELECT 1 FROM order_outbox AS p
			WHERE p.aggregate_type = o.aggregate_type AND p.aggregate_id = o.aggregate_id AND p.sequence < o.sequence)`); n != 0 {
		t.Fatalf("%d events with a wrong head flag", n)
	}
}

func claim(t testing.TB, d *sqlitestore.Driver, p outbox.ClaimParams) outbox.Batch {
	t.Helper()
	if p.Limit == 0 {
		p.Limit = 100
	}
	checkHeads(t, d)
	b, err := d.Claim(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keys renders records as "aggregate_id/sequence" in claim order.
func keys(rs []outbox.Record) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = fmt.Sprintf("%s/%d", r.AggregateID, r.Sequence)
	}
	return strings.Join(s, " ")
}

func finish(t testing.TB, b outbox.Batch, outcomes ...outbox.Outcome) {
	t.Helper()
	if len(outcomes) == 1 && len(b.Records()) > 1 {
		for len(outcomes) < len(b.Records()) {
			outcomes = append(outcomes, outcomes[0])
		}
	}
	if err := b.Finish(context.Background(), outcomes); err != nil {
		t.Fatal(err)
	}
}

var (
	published = outbox.Outcome{Kind: outbox.OutcomePublished}
	deadLet   = outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "broker said no"}
)

func retry(delay time.Duration) outbox.Outcome {
	return outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "timeout", Delay: delay}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	st, err := d.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || !st[0].Applied() || st[0].Version != 1 || st[0].Name != "00001_outbox.sql" || st.Pending() != 0 {
		t.Fatalf("status = %+v, want migration 1 applied", st)
	}
	if s := st.String(); !strings.Contains(s, "00001_outbox.sql") || !strings.Contains(s, "applied") {
		t.Fatalf("status prints %q", s)
	}
	for _, table := range []string{"order_outbox", "order_outbox_sequences", "order_outbox_dlq", sqlitestore.MigrationTable} {
		if n := count(t, d, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, table); n != 1 {
			t.Errorf("table %s: %d", table, n)
		}
	}
	if n := count(t, d, `SELECT count(*) FROM sqlite_schema WHERE name = 'goose_db_version'`); n != 0 {
		t.Errorf("goose's default version table exists; the driver must use its own")
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "1", "busy_timeout": "10000", "foreign_keys": "1"} {
		var got string
		if err := d.DB().QueryRowContext(ctx, `PRAGMA `+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q, %v; want %s", pragma, got, err, want)
		}
	}
}

func TestMigrationStatusPending(t *testing.T) {
	t.Parallel()
	d, err := sqlitestore.Open(testdb.SQLitePath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	st, err := d.MigrationStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Applied() || st.Pending() != 1 || !strings.Contains(st.String(), "pending") {
		t.Fatalf("status = %v, want one pending migration", st)
	}
}

func TestOpenRejectsMemory(t *testing.T) {
	t.Parallel()
	if _, err := sqlitestore.Open(":memory:"); err == nil {
		t.Fatal("Open(:memory:) succeeded; every pooled connection would see another database")
	}
}

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
	if n := count(t, d, `SELECT count(*) FROM order_outbox`); n != 0 {
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

	if n := count(t, d, `SELECT count(*) FROM order_outbox WHERE aggregate_id = 'a'`); n != 0 {
		t.Errorf("published event still in the outbox")
	}
	var (
		attempts              int
		lastErr               string
		nextAt, firstFailedAt int64
	)
	if err := d.DB().QueryRow(`SELECT attempts, last_error, next_attempt_at, first_failed_at
		FROM order_outbox WHERE aggregate_id = 'b'`).Scan(&attempts, &lastErr, &nextAt, &firstFailedAt); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || lastErr != "timeout" || nextAt != c.Now().Add(time.Minute).UnixMicro() ||
		firstFailedAt != c.Now().UnixMicro() {
		t.Errorf("retried row: attempts %d, error %q, next %d, first failed %d", attempts, lastErr, nextAt, firstFailedAt)
	}

	if n := count(t, d, `SELECT count(*) FROM order_outbox WHERE id = ?`, deadID.String()); n != 0 {
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
	if _, err := d.DB().Exec(`CREATE TRIGGER fail_delete BEFORE DELETE ON order_outbox
		WHEN old.aggregate_id = 'poison' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
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
	if n := count(t, d, `SELECT count(*) FROM order_outbox WHERE attempts = 0 AND last_error IS NULL`); n != 3 {
		t.Errorf("outbox has %d untouched events, want 3", n)
	}
	if n := count(t, d, `SELECT count(*) FROM order_outbox_dlq`); n != 0 {
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
	if n := count(t, d, `SELECT count(*) FROM order_outbox`); n != 0 {
		t.Fatalf("%d events left", n)
	}
}

// TestReplayRestoresOrder dead-letters two events of one aggregate (moving
// on past the first), replays them in reverse order, and checks that the
// aggregate then flows in sequence order from the lowest.
func TestReplayRestoresOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	moveOn := outbox.ClaimParams{MoveOnPastDeadLetters: true}
	enqueue(t, d, ev("order", "a", "x"), ev("order", "a", "y"), ev("order", "a", "z"), ev("order", "a", "w"))
	finish(t, claim(t, d, moveOn), deadLet) // a/1
	finish(t, claim(t, d, moveOn), published)
	finish(t, claim(t, d, moveOn), deadLet) // a/3
	dls, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen})
	if err != nil || len(dls) != 2 || dls[0].Sequence != 1 || dls[1].Sequence != 3 {
		t.Fatalf("open dead letters: %+v, %v", dls, err)
	}
	// a/4 is parked behind the dead letters.
	b := claim(t, d, outbox.ClaimParams{})
	if len(b.Records()) != 0 {
		t.Fatalf("parked aggregate claimed %q", keys(b.Records()))
	}
	_ = b.Release(ctx)

	if err := d.ReplayDeadLetter(ctx, dls[1].ID); err != nil { // a/3: the head, ahead of a/4
		t.Fatal(err)
	}
	b = claim(t, d, moveOn)
	if got := keys(b.Records()); got != "a/3" {
		t.Fatalf("after replaying a/3: claimed %q, want a/3", got)
	}
	_ = b.Release(ctx)
	if err := d.ReplayDeadLetter(ctx, dls[0].ID); err != nil { // a/1: takes the head from a/3
		t.Fatal(err)
	}
	if n := count(t, d, `SELECT count(*) FROM order_outbox WHERE head = 1`); n != 1 {
		t.Fatalf("%d heads for one aggregate, want 1", n)
	}
	for _, want := range []string{"a/1", "a/3", "a/4"} {
		b = claim(t, d, outbox.ClaimParams{})
		if got := keys(b.Records()); got != want {
			t.Fatalf("after the replays: claimed %q, want %s", got, want)
		}
		if r := b.Records()[0]; r.Attempts != 0 || r.LastError != "" {
			t.Fatalf("%s: attempts %d, last error %q after replay", want, r.Attempts, r.LastError)
		}
		finish(t, b, published)
	}
	if n := count(t, d, `SELECT count(*) FROM order_outbox`); n != 0 {
		t.Fatalf("%d events left", n)
	}
}

// TestReplayAllOfOneAggregate replays two dead letters of one aggregate in
// one call (one INSERT ... SELECT) and checks the head flag.
func TestReplayAllOfOneAggregate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	moveOn := outbox.ClaimParams{MoveOnPastDeadLetters: true}
	enqueue(t, d, ev("order", "a", "x"), ev("order", "a", "y"), ev("order", "a", "z"))
	finish(t, claim(t, d, moveOn), deadLet) // a/1
	finish(t, claim(t, d, moveOn), deadLet) // a/2
	n, err := d.ReplayDeadLetters(ctx, outbox.DeadLetterFilter{AggregateID: "a"})
	if err != nil || n != 2 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 2", n, err)
	}
	for _, want := range []string{"a/1", "a/2", "a/3"} {
		b := claim(t, d, outbox.ClaimParams{})
		if got := keys(b.Records()); got != want {
			t.Fatalf("claimed %q, want %s", got, want)
		}
		finish(t, b, published)
	}
}

// TestReplayKeepsFreeIdempotencyKey: a dead letter's idempotency key goes
// back with it unless a newer pending event took the key meanwhile.
func TestReplayKeepsFreeIdempotencyKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	for _, agg := range []string{"a", "b"} {
		e := ev("order", agg, "x")
		e.IdempotencyKey = "key-" + agg
		enqueue(t, d, e)
	}
	finish(t, claim(t, d, outbox.ClaimParams{}), deadLet)
	taker := ev("order", "c", "x")
	taker.IdempotencyKey = "key-b"
	enqueue(t, d, taker)
	if n, err := d.ReplayDeadLetters(ctx, outbox.DeadLetterFilter{}); err != nil || n != 2 {
		t.Fatalf("ReplayDeadLetters = %d, %v; want 2", n, err)
	}
	b := claim(t, d, outbox.ClaimParams{})
	defer func() { _ = b.Release(ctx) }()
	got := map[string]string{}
	for _, r := range b.Records() {
		got[r.AggregateID] = r.IdempotencyKey
	}
	if want := map[string]string{"a": "key-a", "b": "", "c": "key-b"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("idempotency keys after replay: %v, want %v", got, want)
	}
}

func TestListLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	if _, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{State: "bogus"}); err == nil {
		t.Fatal("an unknown state was accepted")
	}
	// More than MaxListLimit dead letters, written directly.
	if _, err := d.DB().ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1005)
		INSERT INTO order_outbox_dlq (event_id, aggregate_type, aggregate_id, event_type, payload, sequence,
			retry_count, created_at, first_failed_at, moved_to_dlq_at)
		SELECT printf('01890a5d-ac96-774b-bcce-%012d', i), 'order', 'o' || i, 'x', '{}', 1, 1, 0, 0, 0 FROM n`); err != nil {
		t.Fatal(err)
	}
	for limit, want := range map[int]int{0: sqlitestore.DefaultListLimit, -1: sqlitestore.DefaultListLimit, 5000: sqlitestore.MaxListLimit, 7: 7} {
		got, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{Limit: limit})
		if err != nil || len(got) != want {
			t.Errorf("limit %d: %d dead letters, %v; want %d", limit, len(got), err, want)
		}
	}
}

// TestWriterWaitsForHeldTransaction: SQLite has one writer at a time, so a
// second writer of an aggregate (or of any other) waits for the first and
// then numbers after it; a rollback gives the sequence back.
func TestWriterWaitsForHeldTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	client := outbox.NewClient(d)
	for _, commit := range []bool{false, true} {
		tx, err := d.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		held, err := client.EnqueueTx(ctx, tx, ev("order", "a", "x"))
		if err != nil {
			t.Fatal(err)
		}
		second := make(chan []outbox.Enqueued, 1)
		go func() {
			out, err := client.Enqueue(ctx, ev("order", "a", "y"))
			if err != nil {
				t.Error(err)
			}
			second <- out
		}()
		select {
		case out := <-second:
			t.Fatalf("second writer did not wait: %+v", out)
		case <-time.After(200 * time.Millisecond):
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		out := <-second
		if want := held[0].Sequence + map[bool]int64{false: 0, true: 1}[commit]; len(out) != 1 || out[0].Sequence != want {
			t.Fatalf("commit %v: held %d, second writer %+v; want sequence %d", commit, held[0].Sequence, out, want)
		}
	}
	b := claim(t, d, outbox.ClaimParams{})
	defer func() { _ = b.Release(ctx) }()
	if got := keys(b.Records()); got != "a/1" {
		t.Fatalf("claimed %q", got)
	}
}

// TestWriteGate: a writer queued behind a held write transaction gives up
// when its context ends, and the queue moves on when a transaction ends by
// its context.
func TestWriteGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	txCtx, cancelTx := context.WithCancel(ctx)
	tx, err := d.DB().BeginTx(txCtx, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := outbox.NewClient(d).Enqueue(short, ev("order", "a", "x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("writer behind a held transaction: %v, want its context's deadline", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("writer waited %v for a 100ms context", waited)
	}
	cancelTx() // database/sql rolls tx back
	deadline, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if _, err := outbox.NewClient(d).Enqueue(deadline, ev("order", "a", "x")); err != nil {
		t.Fatalf("writer after the held transaction's context ended: %v", err)
	}
	if err := tx.Rollback(); !errors.Is(err, sql.ErrTxDone) {
		t.Fatalf("held transaction: %v, want ErrTxDone", err)
	}
	// Read-only transactions do not queue.
	tx2, err := d.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback() }()
	ro, err := d.DB().BeginTx(deadline, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only transaction behind a writer: %v", err)
	}
	var n int
	if err := ro.QueryRowContext(deadline, `SELECT count(*) FROM order_outbox`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("read in a read-only transaction: %d, %v", n, err)
	}
	_ = ro.Rollback()
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
// order (no scan of the outbox, no sort) and probes the other indexes.
func TestClaimQueryPlan(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	for name, q := range map[string]string{"park": sqlitestore.ClaimSQL, "move on": sqlitestore.ClaimMoveOnSQL} {
		plan := queryPlan(t, d, q, 0, 500)
		text := strings.Join(plan, "\n")
		t.Logf("%s:\n%s", name, text)
		if !strings.Contains(text, "SEARCH o USING INDEX order_outbox_due_heads (next_attempt_at<?)") ||
			!strings.Contains(text, "SEARCH p USING COVERING INDEX") ||
			strings.Contains(text, "SCAN") || strings.Contains(text, "TEMP B-TREE") {
			t.Errorf("%s: plan\n%s", name, text)
		}
		if name == "park" && !strings.Contains(text, "SEARCH d USING INDEX order_outbox_dlq_open") {
			t.Errorf("parking check does not use the open dead letters index:\n%s", text)
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
	if n := count(t, d, `SELECT count(*) FROM order_outbox`); n != 0 {
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

// TestWritersWaitForBatch: more writers than pooled connections queue on the
// write lock while a batch holds it; the batch still finishes (it needs no
// second connection) and every writer then commits.
func TestWritersWaitForBatch(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	d := openDriver(t, path)
	// The test reads through another handle: while the batch holds the lock,
	// the writers hold every pooled connection of d.
	reader := openDriver(t, path)
	enqueue(t, d, ev("order", "first", "x"))
	b := claim(t, d, outbox.ClaimParams{})
	writers := 2 * d.DB().Stats().MaxOpenConnections
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
	)
	for i := range writers {
		wg.Go(func() {
			if _, err := outbox.NewClient(d).Enqueue(context.Background(), ev("order", fmt.Sprint("w", i), "x")); err != nil {
				t.Errorf("writer %d: %v", i, err)
				failed.Add(1)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if n := count(t, reader, `SELECT count(*) FROM order_outbox`); n != 1 {
		t.Errorf("%d events visible while the batch held the lock, want 1", n)
	}
	finish(t, b, published)
	wg.Wait()
	if n := count(t, d, `SELECT count(*) FROM order_outbox`); n != writers || failed.Load() != 0 {
		t.Fatalf("%d events after the batch, %d writers failed; want %d and 0", n, failed.Load(), writers)
	}
}

func TestListen(t *testing.T) {
	t.Parallel()
	bg := context.Background()
	d := newDriver(t)
	ctx, cancel := context.WithCancel(bg)
	woken := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- d.Listen(ctx, func() { woken <- struct{}{} }) }()
	// A wake-up before Listen has registered is lost, so enqueue until one
	// arrives.
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		enqueue(t, d, ev("order", "a", "x"))
		select {
		case <-woken:
			got = true
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("no wake-up after InsertTx")
		}
	}
	expectWake := func(what string) {
		t.Helper()
		select {
		case <-woken:
		case <-time.After(5 * time.Second):
			t.Fatalf("no wake-up after %s", what)
		}
		for len(woken) > 0 {
			<-woken
		}
	}
	finish(t, claim(t, d, outbox.ClaimParams{}), deadLet) // a/1
	for len(woken) > 0 {
		<-woken
	}
	dls, err := d.ListDeadLetters(bg, outbox.DeadLetterFilter{})
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters: %v, %v", dls, err)
	}
	if err := d.ReplayDeadLetter(bg, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	expectWake("a replay")
	finish(t, claim(t, d, outbox.ClaimParams{}), deadLet) // a/1 again
	if dls, err = d.ListDeadLetters(bg, outbox.DeadLetterFilter{State: outbox.DeadLetterOpen}); err != nil || len(dls) != 1 {
		t.Fatalf("dead letters: %v, %v", dls, err)
	}
	if err := d.DiscardDeadLetter(bg, dls[0].ID, "x"); err != nil {
		t.Fatal(err)
	}
	expectWake("a discard")

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen after cancel: %v", err)
	}
	go func() { done <- d.Listen(bg, func() {}) }()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Listen returned nil after Close; want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen still running after Close")
	}
}

// TestRelayKeepsOrderAcrossProcesses runs two relays on two handles of one
// file (as two processes would) while writers enqueue, and checks that each
// aggregate's events are published in sequence order, each once.
func TestRelayKeepsOrderAcrossProcesses(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	d1 := openDriver(t, path)
	d2 := openDriver(t, path)
	pub := &recorder{seen: map[string][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	var relays sync.WaitGroup
	for _, d := range []*sqlitestore.Driver{d1, d2} {
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{BatchSize: 7, Workers: 2, PollInterval: 10 * time.Millisecond})
		relays.Go(func() { _ = r.Run(ctx) })
	}
	const aggregates, perAggregate = 10, 30
	var writers sync.WaitGroup
	for w := range 3 {
		d := []*sqlitestore.Driver{d1, d2, d1}[w]
		writers.Go(func() {
			for i := range perAggregate * aggregates / 3 {
				agg := fmt.Sprint("agg", (i+w)%aggregates)
				if _, err := outbox.NewClient(d).Enqueue(context.Background(), ev("order", agg, "x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for pub.total() < aggregates*perAggregate && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	relays.Wait()
	if got := pub.total(); got != aggregates*perAggregate {
		t.Fatalf("published %d events, want %d", got, aggregates*perAggregate)
	}
	for agg, seqs := range pub.seen {
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("%s: published sequences %v, want 1..%d in order", agg, seqs, len(seqs))
			}
		}
	}
}

type recorder struct {
	mu   sync.Mutex
	seen map[string][]int64
	n    int
}

func (r *recorder) Publish(_ context.Context, msgs []outbox.Message) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.seen[m.AggregateID] = append(r.seen[m.AggregateID], m.Sequence)
		r.n++
	}
	return make([]error, len(msgs))
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *recorder) Close() error { return nil }
