package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

func TestIsConnectionError(t *testing.T) {
	t.Parallel()
	yes := []error{
		&pgconn.PgError{Code: "57P01"}, // admin_shutdown: pg_terminate_backend
		&pgconn.PgError{Code: "57P02"},
		&pgconn.PgError{Code: "57P03"},
		&pgconn.PgError{Code: "08006"},
		&pgconn.PgError{Code: "08000"},
		&pgconn.PgError{Code: "53300"},
		fmt.Errorf("pgstore: begin: %w", &pgconn.PgError{Code: "57P01"}),
		io.ErrUnexpectedEOF,
		fmt.Errorf("read: %w", io.EOF),
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
		pgconn.ErrConnClosed,
		fmt.Errorf("x: %w", outbox.ErrUnavailable),
	}
	for _, err := range yes {
		if !pgstore.IsConnectionError(err) {
			t.Errorf("IsConnectionError(%v) = false", err)
		}
		if !errors.Is(pgstore.Unavailable(err), outbox.ErrUnavailable) {
			t.Errorf("Unavailable(%v) is not ErrUnavailable", err)
		}
	}
	no := []error{
		nil,
		errors.New("plain"),
		&pgconn.PgError{Code: "23505"},
		&pgconn.PgError{Code: "40001"},
		&pgconn.PgError{Code: "57014"}, // query_canceled: a statement timeout
		context.Canceled,
		fmt.Errorf("pgstore: %w", context.Canceled),
	}
	for _, err := range no {
		if pgstore.IsConnectionError(err) {
			t.Errorf("IsConnectionError(%v) = true", err)
		}
		if got := pgstore.Unavailable(err); got != err { //nolint:errorlint // unchanged means the same value
			t.Errorf("Unavailable(%v) = %v, want it unchanged", err, got)
		}
	}
	// The mark keeps the message and the cause.
	cause := &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}
	err := pgstore.Unavailable(fmt.Errorf("pgstore: begin: %w", cause))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr != cause || err.Error() != "pgstore: begin: "+cause.Error() {
		t.Errorf("Unavailable lost the cause: %v", err)
	}
}

// terminate ends every server process with application name app from a
// connection of its own, and waits until they are gone. It returns how
// many it ended.
func terminate(t *testing.T, app string) int {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testdb.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1`, app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	waitGone(t, conn, `application_name = $1`, app)
	return n
}

// terminatePID ends the server process pid, and waits until it is gone.
func terminatePID(t *testing.T, pid uint32) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testdb.PostgresURL())
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)).Scan(&ok); err != nil || !ok {
		t.Errorf("pg_terminate_backend(%d): %v, %v", pid, ok, err)
		return
	}
	waitGone(t, conn, `pid = $1`, int64(pid))
}

func waitGone(t *testing.T, conn *pgx.Conn, cond string, arg any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE `+cond, arg).Scan(&left); err != nil {
			t.Error(err)
			return
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d server processes still there after pg_terminate_backend", left)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fill makes the pool hold n idle connections.
func fill(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	conns := make([]*pgxpool.Conn, n)
	for i := range conns {
		c, err := pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		c.Release()
	}
}

func countRows(t *testing.T, d *pgstore.Driver) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		n   int
		err error
	)
	for range d.Pool().Config().MaxConns + 1 { // past connections whose server process was terminated
		if err = d.Pool().QueryRow(ctx, sqlOf(d, "SELECT count(*) FROM {{outbox}}")).Scan(&n); !pgstore.IsConnectionError(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func testEvent() outbox.Event {
	return outbox.Event{AggregateType: "order", AggregateID: "A", Type: "t", Payload: json.RawMessage(`{}`)}
}

// After the server processes of every pooled connection were terminated (a
// restart, an operator's pg_terminate_backend), the pool still holds those
// connections and the next BEGIN fails on one (57P01): WithTx begins again
// on a live connection instead of failing a write that never started.
func TestWithTxBeginsAgainAfterTerminatedBackends(t *testing.T) {
	t.Parallel()
	const conns = 4
	pool, schema := newPool(t, conns)
	d := migrated(t, pool, pgstore.Config{Name: schema})
	client := outbox.NewClient[pgx.Tx](d)
	for round := range 3 {
		fill(t, pool, conns)
		if n := terminate(t, schema); n < conns {
			t.Fatalf("terminated %d server processes, want %d", n, conns)
		}
		// Within the second after which the pool pings an idle connection
		// before handing it out: every pooled connection is dead.
		if _, err := client.Enqueue(t.Context(), testEvent()); err != nil {
			t.Fatalf("round %d: Enqueue after the server processes were terminated: %v", round, err)
		}
		if n := countRows(t, d); n != round+1 {
			t.Fatalf("round %d: %d events, want %d", round, n, round+1)
		}
	}
}

// A connection lost inside the transaction: nothing was written, the error
// is ErrUnavailable (and not ErrOutcomeUnknown), fn's error is in its chain,
// and fn ran once.
func TestWithTxMarksAConnectionLostBeforeCommit(t *testing.T) {
	t.Parallel()
	pool, schema := newPool(t, 2)
	d := migrated(t, pool, pgstore.Config{Name: schema})
	client := outbox.NewClient[pgx.Tx](d)
	ctx := t.Context()
	runs := 0
	err := d.WithTx(ctx, func(tx pgx.Tx) error {
		runs++
		if _, err := client.EnqueueTx(ctx, tx, testEvent()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, outbox.ErrOutcomeUnknown) || !errors.As(err, &pgErr) {
		t.Fatalf("WithTx: %v; want ErrUnavailable with fn's *pgconn.PgError", err)
	}
	if runs != 1 {
		t.Errorf("fn ran %d times", runs)
	}
	if n := countRows(t, d); n != 0 {
		t.Fatalf("%d events written by a transaction whose connection was lost", n)
	}
	// The pool goes on.
	if _, err := client.Enqueue(ctx, testEvent()); err != nil {
		t.Fatal(err)
	}
}

// A connection lost between fn and COMMIT: WithTx cannot know whether the
// commit happened, and says so unless pgx knows nothing was sent.
func TestWithTxMarksAConnectionLostAtCommit(t *testing.T) {
	t.Parallel()
	pool, schema := newPool(t, 2)
	d := migrated(t, pool, pgstore.Config{Name: schema})
	client := outbox.NewClient[pgx.Tx](d)
	ctx := t.Context()
	err := d.WithTx(ctx, func(tx pgx.Tx) error {
		if _, err := client.EnqueueTx(ctx, tx, testEvent()); err != nil {
			return err
		}
		terminatePID(t, tx.Conn().PgConn().PID())
		return nil
	})
	if !errors.Is(err, outbox.ErrUnavailable) {
		t.Fatalf("WithTx: %v; want ErrUnavailable or ErrOutcomeUnknown", err)
	}
	t.Logf("WithTx: %v (outcome unknown: %t)", err, errors.Is(err, outbox.ErrOutcomeUnknown))
	if n := countRows(t, d); n != 0 {
		t.Fatalf("%d events written by a terminated transaction", n)
	}
}

// A database that cannot be reached at all (a port on 127.0.0.1 where
// nothing listens): every operation is ErrUnavailable, WithTx never runs
// fn, and nothing waits longer than the connection attempts.
func TestClosedPortIsUnavailable(t *testing.T) {
	t.Parallel()
	pcfg, err := pgxpool.ParseConfig("postgres://u@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 3
	pool, err := pgxpool.NewWithConfig(t.Context(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	d, err := pgstore.New(pool, pgstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	err = d.WithTx(ctx, func(pgx.Tx) error {
		t.Error("fn ran without a database")
		return nil
	})
	if !errors.Is(err, outbox.ErrUnavailable) || errors.Is(err, outbox.ErrOutcomeUnknown) {
		t.Errorf("WithTx: %v, want ErrUnavailable", err)
	}
	if _, err := outbox.NewClient[pgx.Tx](d).Enqueue(ctx, testEvent()); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("Enqueue: %v, want ErrUnavailable", err)
	}
	if _, err := d.Stats(ctx); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("Stats: %v, want ErrUnavailable", err)
	}
	if _, err := d.ListDeadLetters(ctx, outbox.DeadLetterFilter{}); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("ListDeadLetters: %v, want ErrUnavailable", err)
	}
	if _, err := d.GetDeadLetter(ctx, 1); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("GetDeadLetter: %v, want ErrUnavailable", err)
	}
	if err := d.ReplayDeadLetter(ctx, 1); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("ReplayDeadLetter: %v, want ErrUnavailable", err)
	}
	if err := d.DiscardDeadLetter(ctx, 1, "r"); !errors.Is(err, outbox.ErrUnavailable) {
		t.Errorf("DiscardDeadLetter: %v, want ErrUnavailable", err)
	}
	// A statement the server refuses is no connection error.
	pool2, schema := newPool(t, 2)
	d2 := migrated(t, pool2, pgstore.Config{Name: schema})
	err = d2.WithTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT no_such_column FROM "+d2.Names().Name)
		return err
	})
	if err == nil || errors.Is(err, outbox.ErrUnavailable) || pgstore.IsConnectionError(err) {
		t.Errorf("a failed statement: %v, want an error that is not ErrUnavailable", err)
	}
}
