package sqlitestore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
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

// newDriver opens and migrates a fresh database file for the test, with the
// default outbox name.
func newDriver(t testing.TB) *sqlitestore.Driver {
	t.Helper()
	return openDriver(t, testdb.SQLitePath(t))
}

func openDriver(t testing.TB, path string) *sqlitestore.Driver {
	t.Helper()
	return openNamed(t, path, "")
}

// openNamed opens and migrates the outbox called name in the database file
// at path.
func openNamed(t testing.TB, path, name string) *sqlitestore.Driver {
	t.Helper()
	d, err := sqlitestore.Open(path, sqlitestore.Config{Name: name})
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

// sqlf renders query, which names d's tables {{outbox}}, {{dlq}} and
// {{sequences}}, as the driver renders its own.
func sqlf(d *sqlitestore.Driver, query string) string {
	return sqlitestore.Render(d.Names(), query)
}

// count runs query (rendered by sqlf), which counts something.
func count(t testing.TB, d *sqlitestore.Driver, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.DB().QueryRowContext(context.Background(), sqlf(d, query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// checkHeads asserts the head invariant: the flag is set exactly on the
// pending event with the lowest sequence of each aggregate.
func checkHeads(t testing.TB, d *sqlitestore.Driver) {
	t.Helper()
	if n := count(t, d, `SELECT count(*) FROM {{outbox}} AS o
		WHERE o.head <> NOT EXISTS (SELECT 1 FROM {{outbox}} AS p
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
