package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
	"github.com/heraldhq/herald/outbox/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newDriver returns a migrated driver on a fresh schema. Its connections
// carry the schema's name as application_name, and so does its outbox
// unless cfg names one: the outbox's name is its channel, NOTIFY is
// database-wide, and parallel tests must not wake each other.
func newDriver(t testing.TB, cfg pgstore.Config) *pgstore.Driver {
	t.Helper()
	pool, schema := newPool(t, benchClients+2)
	if cfg.Name == "" {
		cfg.Name = schema
	}
	return migrated(t, pool, cfg)
}

// newPool returns a pool of at most maxConns connections on a fresh schema,
// with the schema's name as application_name.
func newPool(t testing.TB, maxConns int32) (pool *pgxpool.Pool, schema string) {
	t.Helper()
	url, schema := testdb.PostgresSchema(t)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = maxConns
	pcfg.ConnConfig.RuntimeParams["application_name"] = schema
	pool, err = pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, schema
}

// migrated returns a migrated driver with cfg on pool.
func migrated(t testing.TB, pool *pgxpool.Pool, cfg pgstore.Config) *pgstore.Driver {
	t.Helper()
	d, err := pgstore.New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return d
}

// sqlOf renders the placeholders {{outbox}}, {{dlq}} and {{sequences}} in
// query with the tables of d's outbox.
func sqlOf(d *pgstore.Driver, query string) string {
	n := d.Names()
	return strings.NewReplacer("{{outbox}}", n.Name, "{{dlq}}", n.DeadLetters, "{{sequences}}", n.Sequences).Replace(query)
}

func TestConformance(t *testing.T) {
	for name, cfg := range map[string]pgstore.Config{
		"notify_after_commit": {},
		"notify_in_tx":        {NotifyInTx: true},
	} {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, storetest.Harness[pgx.Tx]{
				New: func(t *testing.T) outbox.Driver[pgx.Tx] {
					return newDriver(t, cfg)
				},
				// Another outbox in d's schema, on d's pool.
				Named: func(t *testing.T, d outbox.Driver[pgx.Tx], name string) outbox.Driver[pgx.Tx] {
					cfg := cfg
					cfg.Name = name
					return migrated(t, d.(*pgstore.Driver).Pool(), cfg)
				},
				ConcurrentWriters: true,
				Runs:              true,
			})
		})
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url, schema := testdb.PostgresSchema(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	d, err := pgstore.New(pool, pgstore.Config{})
	if err != nil {
		t.Fatal(err)
	}

	status, err := d.MigrationStatus(ctx)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if len(status) == 0 || status.Pending() != len(status) || status[0].Name != "00001_outbox.sql" {
		t.Fatalf("before Migrate: %v", status)
	}
	// Concurrent migrators take turns.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = d.Migrate(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if err := d.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	status, err = d.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.Pending() != 0 || !status[0].Applied() || !strings.Contains(status.String(), "00001_outbox.sql") {
		t.Fatalf("after Migrate: %v", status)
	}
	// The tables and the version table are in the pool's schema, named
	// after the default outbox, and so are their indexes and constraints.
	if n := d.Names(); n.Name != outbox.DefaultName || n.Migrations != outbox.DefaultName+"_migrations" {
		t.Fatalf("Names() = %+v", n)
	}
	var tables []string
	rows, _ := pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, schema)
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := "outbox outbox_dlq outbox_migrations outbox_sequences"
	if got := strings.Join(tables, " "); got != want {
		t.Fatalf("tables %q, want %q", got, want)
	}
	rows, _ = pool.Query(ctx, `SELECT relname FROM pg_class WHERE relnamespace = $1::text::regnamespace AND relkind = 'i'
		UNION ALL SELECT conname FROM pg_constraint WHERE connamespace = $1::text::regnamespace ORDER BY 1`, schema)
	objects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		if !strings.HasPrefix(o, "outbox_") {
			t.Errorf("index or constraint %s is not prefixed with the outbox's name", o)
		}
	}
	if !slices.Contains(objects, "outbox_pos_idx") || !slices.Contains(objects, "outbox_dlq_open_aggregate_idx") {
		t.Errorf("indexes and constraints: %v", objects)
	}
}

// TestSchemaRules checks the constraints that hold rules, with writes that
// bypass the driver.
func TestSchemaRules(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	pool := d.Pool()
	client := outbox.NewClient[pgx.Tx](d)
	if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	b, err := d.Claim(ctx, outbox.ClaimParams{Limit: 1})
	if err != nil || len(b.Records()) != 1 {
		t.Fatalf("Claim: %v", err)
	}
	releaseAtCleanup(t, b)
	if err := b.Finish(ctx, []outbox.Outcome{{Kind: outbox.OutcomeDeadLetter, Error: "x"}}); err != nil {
		t.Fatal(err)
	}
	var dlID int64
	if err := pool.QueryRow(ctx, sqlOf(d, "SELECT id FROM {{dlq}}")).Scan(&dlID); err != nil {
		t.Fatal(err)
	}
	for name, stmt := range map[string]string{
		"sequence 0": `INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, sequence)
			VALUES (gen_random_uuid(), 'order', 'B', 't', '{}', 0)`,
		"empty aggregate id": `INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, sequence)
			VALUES (gen_random_uuid(), 'order', '', 't', '{}', 1)`,
		"header not a string": `INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers, sequence)
			VALUES (gen_random_uuid(), 'order', 'B', 't', '{}', '{"a": 1}', 1)`,
		"headers not an object": `INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, headers, sequence)
			VALUES (gen_random_uuid(), 'order', 'B', 't', '{}', '[]', 1)`,
		"failed without first failure": `INSERT INTO {{outbox}} (id, aggregate_type, aggregate_id, event_type, payload, sequence, attempts)
			VALUES (gen_random_uuid(), 'order', 'B', 't', '{}', 1, 1)`,
		"replayed and discarded": fmt.Sprintf(`UPDATE {{dlq}} SET reprocessed = true, reprocessed_at = now(),
			discarded_at = now(), discard_reason = 'x' WHERE id = %d`, dlID),
		"replayed without time":    fmt.Sprintf(`UPDATE {{dlq}} SET reprocessed = true WHERE id = %d`, dlID),
		"discarded without reason": fmt.Sprintf(`UPDATE {{dlq}} SET discarded_at = now() WHERE id = %d`, dlID),
		"second open dead letter of an event": `INSERT INTO {{dlq}} (event_id, aggregate_type, aggregate_id,
			event_type, payload, sequence, error_message, retry_count, created_at, first_failed_at)
			SELECT event_id, aggregate_type, aggregate_id, event_type, payload, sequence, 'y', 1, now(), now() FROM {{dlq}}`,
	} {
		// Refused by a rule (a check or a unique index), not by a mistake.
		_, err := pool.Exec(ctx, sqlOf(d, stmt))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "23514" && pgErr.Code != "23505") {
			t.Errorf("%s: %v, want a check or unique violation", name, err)
		}
	}
}

// TestInvalidForPostgres: values Event.Validate lets through but PostgreSQL
// cannot store are refused as invalid, with nothing written.
func TestInvalidForPostgres(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	client := outbox.NewClient[pgx.Tx](d)
	for name, e := range map[string]outbox.Event{
		"NUL in aggregate id": {AggregateType: "order", AggregateID: "a\x00b", Type: "t", Payload: json.RawMessage(`{}`)},
		"invalid UTF-8":       {AggregateType: "order", AggregateID: "a\xffb", Type: "t", Payload: json.RawMessage(`{}`)},
		"NUL in JSON":         {AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`"\u0000"`)},
	} {
		_, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`1`)}, e)
		if !errors.Is(err, outbox.ErrInvalidEvent) {
			t.Errorf("%s: %v, want ErrInvalidEvent", name, err)
		}
	}
	st, err := d.Stats(ctx)
	if err != nil || st.Pending != 0 {
		t.Fatalf("Stats = %+v, %v; want nothing pending", st, err)
	}
}

// TestClaimLapsesWhenRelayDies: a relay killed mid-batch loses its
// connection; PostgreSQL rolls the claim back and the events reappear.
func TestClaimLapsesWhenRelayDies(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	client := outbox.NewClient[pgx.Tx](d)
	if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	b, err := d.Claim(ctx, outbox.ClaimParams{Limit: 10})
	if err != nil || len(b.Records()) != 1 {
		t.Fatalf("Claim: %v", err)
	}
	releaseAtCleanup(t, b)
	// Kill the claiming backend, as if the relay's host died.
	var killed int
	err = d.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid()
		AND state = 'idle in transaction' AND query LIKE '%DELETE FROM ' || $1 || '%'`, d.Names().Name).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d backends, %v", killed, err)
	}
	b2 := claimWithin(t, d, 10*time.Second)
	if got := b2.Records()[0]; got.ID != b.Records()[0].ID || got.Attempts != 0 {
		t.Fatalf("reclaimed %+v, want %+v", got, b.Records()[0])
	}
	if err := b.Finish(ctx, []outbox.Outcome{{Kind: outbox.OutcomePublished}}); err == nil {
		t.Fatal("Finish on a dead claim succeeded")
	}
	if err := b2.Finish(ctx, []outbox.Outcome{{Kind: outbox.OutcomePublished}}); err != nil {
		t.Fatal(err)
	}
}

// TestClaimTimeout: a hung relay's claim lapses after ClaimTimeout.
func TestClaimTimeout(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{ClaimTimeout: time.Second})
	client := outbox.NewClient[pgx.Tx](d)
	if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	b, err := d.Claim(ctx, outbox.ClaimParams{Limit: 10})
	if err != nil || len(b.Records()) != 1 {
		t.Fatalf("Claim: %v", err)
	}
	releaseAtCleanup(t, b)
	b2, err := d.Claim(ctx, outbox.ClaimParams{Limit: 10})
	if err != nil || len(b2.Records()) != 0 {
		t.Fatalf("second Claim while the first is fresh: %d records, %v", len(b2.Records()), err)
	}
	b2 = claimWithin(t, d, 10*time.Second)
	if b2.Records()[0].ID != b.Records()[0].ID {
		t.Fatal("reclaimed another event")
	}
	if err := b.Finish(ctx, []outbox.Outcome{{Kind: outbox.OutcomePublished}}); err == nil {
		t.Fatal("Finish on a lapsed claim succeeded")
	}
	if err := b.Release(ctx); err != nil {
		t.Fatalf("Release after a failed Finish: %v", err)
	}
	if err := b2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// claimWithin claims until it gets events. Claims that fail are retried: on
// a loaded machine a claim with a short ClaimTimeout may itself time out.
func claimWithin(t *testing.T, d *pgstore.Driver, within time.Duration) outbox.Batch {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, err := d.Claim(t.Context(), outbox.ClaimParams{Limit: 10})
		if err == nil && len(b.Records()) > 0 {
			releaseAtCleanup(t, b)
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing claimable within %v (last error: %v)", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestListenReportsLostConnection: Listen returns an error, not nil, when
// its connection dies while ctx is live.
func TestListenReportsLostConnection(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	woke := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- d.Listen(ctx, func() {
			select {
			case woke <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-woke: // Listen wakes once when it starts listening
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not start")
	}
	var killed int
	if err := d.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = current_setting('application_name') AND query LIKE 'LISTEN %'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners, %v", killed, err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Listen returned nil after losing its connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not notice its connection died")
	}
}

// TestDisableNotify: no notification is sent, and Listen just waits.
func TestDisableNotify(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// One outbox name in two schemas: one channel.
	d := newDriver(t, pgstore.Config{DisableNotify: true, Name: "herald_disabled_test"})
	listener := newDriver(t, pgstore.Config{Name: "herald_disabled_test"})
	woke := make(chan struct{}, 8)
	done := make(chan error, 2)
	go func() { done <- listener.Listen(ctx, func() { woke <- struct{}{} }) }()
	// d's Listen hears no notification, only Notify calls of d itself,
	// in-process (as Client.Enqueue's below).
	var dWoke atomic.Int64
	go func() { done <- d.Listen(ctx, func() { dWoke.Add(1) }) }()
	<-woke // the listener is listening
	if _, err := listener.Pool().Exec(ctx, "SELECT pg_notify($1, '')", listener.Names().Channel); err != nil {
		t.Fatal(err)
	}
	<-woke // the listener heard it
	time.Sleep(200 * time.Millisecond)
	if n := dWoke.Load(); n != 0 {
		t.Fatalf("Listen with DisableNotify heard a notification (%d wake-ups)", n)
	}
	client := outbox.NewClient[pgx.Tx](d)
	if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
		t.Fatal("an enqueue with DisableNotify sent a notification")
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("Listen: %v", err)
		}
	}
}

// By default the writing transaction sends nothing; Notify (which WithTx and
// Client.Enqueue call after the commit) wakes the relays.
func TestNotifyAfterCommit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d := newDriver(t, pgstore.Config{Name: "herald_after_commit_test"})
	// A relay of d's own process listens too, so d paces its notifications
	// for the other process's relay, which must still get them.
	localDone := make(chan error, 1)
	go func() { localDone <- d.Listen(ctx, func() {}) }()
	listener := newDriver(t, pgstore.Config{Name: "herald_after_commit_test"})
	woke := make(chan struct{}, 64)
	done := make(chan error, 1)
	go func() { done <- listener.Listen(ctx, func() { woke <- struct{}{} }) }()
	<-woke // the listener is listening
	client := outbox.NewClient[pgx.Tx](d)
	event := func() outbox.Event {
		return outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}
	}
	waitWake := func(what string) {
		t.Helper()
		select {
		case <-woke:
		case <-time.After(30 * time.Second):
			t.Fatalf("no wake-up after %s", what)
		}
	}

	// The caller's own transaction: nothing is sent at its commit...
	tx, err := d.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.EnqueueTx(ctx, tx, event()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
		t.Fatal("InsertTx sent a notification without NotifyInTx")
	case <-time.After(300 * time.Millisecond):
	}
	// ...until the caller says it committed.
	d.Notify()
	waitWake("Notify")

	// Client.Enqueue notifies by itself after its commit.
	if _, err := client.Enqueue(ctx, event()); err != nil {
		t.Fatal(err)
	}
	waitWake("Client.Enqueue")

	// A burst of commits is coalesced, and the last one is never lost.
	for range 50 {
		d.Notify()
	}
	waitWake("a burst of Notify calls")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if err := <-localDone; err != nil {
		t.Fatalf("Listen on the notifying driver: %v", err)
	}
}

// With NotifyInTx the writing transaction notifies by itself: a caller that
// commits its own transaction wakes the relays without calling Notify.
func TestNotifyInTx(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d := newDriver(t, pgstore.Config{Name: "herald_in_tx_test", NotifyInTx: true})
	listener := newDriver(t, pgstore.Config{Name: "herald_in_tx_test"})
	woke := make(chan struct{}, 64)
	done := make(chan error, 1)
	go func() { done <- listener.Listen(ctx, func() { woke <- struct{}{} }) }()
	<-woke // the listener is listening
	client := outbox.NewClient[pgx.Tx](d)
	for _, n := range []int{1, 3} { // one event (a plain statement) and a batch
		events := make([]outbox.Event, n)
		for i := range events {
			events[i] = outbox.Event{AggregateType: "order", AggregateID: fmt.Sprint("A", i), Type: "t", Payload: json.RawMessage(`{}`)}
		}
		tx, err := d.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.EnqueueTx(ctx, tx, events...); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woke:
			t.Fatal("a wake-up before the commit")
		case <-time.After(100 * time.Millisecond):
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woke:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d events: no wake-up after the commit", n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen: %v", err)
	}
}

// WithTx rolls back when fn fails after ctx was cancelled: the rollback runs
// on the connection, which goes back to the pool clean (a rollback on the
// cancelled ctx would not be sent, and pgx would close the connection). fn's
// error comes back unchanged.
func TestWithTxRollsBackAfterCancel(t *testing.T) {
	t.Parallel()
	pool, schema := newPool(t, 1) // one connection: the next query gets the same one
	d := migrated(t, pool, pgstore.Config{Name: schema})
	client := outbox.NewClient[pgx.Tx](d)
	pid := backendPID(t, pool)
	errFailed := errors.New("failed")

	ctx, cancel := context.WithCancel(t.Context())
	err := d.WithTx(ctx, func(tx pgx.Tx) error {
		if _, err := client.EnqueueTx(ctx, tx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
			return err
		}
		cancel()
		return errFailed
	})
	if err != errFailed { //nolint:errorlint // unchanged means the same value
		t.Fatalf("WithTx returned %v, want fn's error unchanged", err)
	}
	expectCleanRollback(t, d, pid)

	// A panic in fn rolls back as well, and goes on.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want fn's panic", p)
			}
		}()
		_ = d.WithTx(ctx, func(tx pgx.Tx) error {
			if _, err := client.EnqueueTx(ctx, tx, outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
				return err
			}
			cancel()
			panic("boom")
		})
	}()
	expectCleanRollback(t, d, pid)
}

// expectCleanRollback checks that d's pool hands out the connection pid,
// idle and not in a transaction, and that nothing was written.
func expectCleanRollback(t *testing.T, d *pgstore.Driver, pid uint32) {
	t.Helper()
	ctx := t.Context()
	conn, err := d.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if got := conn.Conn().PgConn().PID(); got != pid {
		t.Fatalf("the pool's connection is %d, was %d: the rolled-back one was closed", got, pid)
	}
	if st := conn.Conn().PgConn().TxStatus(); st != 'I' {
		t.Fatalf("connection's transaction status %q, want idle", st)
	}
	var n int
	if err := conn.QueryRow(ctx, sqlOf(d, "SELECT count(*) FROM {{outbox}}")).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events after a rollback, %v", n, err)
	}
}

func backendPID(t *testing.T, pool *pgxpool.Pool) uint32 {
	t.Helper()
	conn, err := pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	return conn.Conn().PgConn().PID()
}

// Notify wakes a relay listening through the same Driver in-process: with
// DisableNotify nothing goes through PostgreSQL, and the wake-up still comes,
// until that Listen call has returned.
func TestNotifyWakesListenersOfThisDriverInProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d := newDriver(t, pgstore.Config{DisableNotify: true})
	var wakes atomic.Int64
	done := make(chan error, 1)
	go func() { done <- d.Listen(ctx, func() { wakes.Add(1) }) }()
	deadline := time.Now().Add(30 * time.Second)
	for wakes.Load() == 0 { // until Listen has registered its wake function
		if time.Now().After(deadline) {
			t.Fatal("Notify never woke the listener of its own Driver")
		}
		d.Notify()
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen: %v", err)
	}
	before := wakes.Load()
	d.Notify()
	if n := wakes.Load(); n != before {
		t.Fatalf("Notify woke a listener whose Listen had returned (%d wake-ups, was %d)", n, before)
	}
}

// releaseAtCleanup releases b when the test ends, so that a failed test does
// not leave the pool waiting for the batch's connection. Release is a no-op
// on a batch that has ended.
func releaseAtCleanup(t *testing.T, b outbox.Batch) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Release(ctx)
	})
}

// Claims walk the aggregates round robin from where the last one stopped:
// aggregates with long backlogs written first do not hold back the others,
// and the walk wraps around to the start.
func TestClaimTakesAggregatesRoundRobin(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDriver(t, pgstore.Config{})
	client := outbox.NewClient[pgx.Tx](d)
	for _, agg := range []string{"A", "B", "C", "D"} {
		for range 3 {
			if _, err := client.Enqueue(ctx, outbox.Event{AggregateType: "order", AggregateID: agg, Type: "t", Payload: json.RawMessage(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []string
	for range 6 {
		b, err := d.Claim(ctx, outbox.ClaimParams{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		outcomes := make([]outbox.Outcome, len(b.Records()))
		for i, r := range b.Records() {
			keys = append(keys, fmt.Sprintf("%s%d", r.AggregateID, r.Sequence))
			outcomes[i] = outbox.Outcome{Kind: outbox.OutcomePublished}
		}
		slices.Sort(keys)
		got = append(got, strings.Join(keys, ","))
		if err := b.Finish(ctx, outcomes); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"A1,B1", "C1,D1", "A2,B2", "C2,D2", "A3,B3", "C3,D3"}
	if !slices.Equal(got, want) {
		t.Fatalf("claims took %v, want %v", got, want)
	}
}
