package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestOpenRejectsMemory(t *testing.T) {
	t.Parallel()
	if _, err := sqlitestore.Open(":memory:", sqlitestore.Config{}); err == nil {
		t.Fatal("Open(:memory:) succeeded; every pooled connection would see another database")
	}
}

// TestInvalidName: Open and New refuse a name that is not a plain SQL
// identifier, saying which name and what a name may be, before touching
// the database.
func TestInvalidName(t *testing.T) {
	t.Parallel()
	db := newDriver(t).DB()
	for _, name := range []string{"Orders", "1outbox", "order-outbox", "outbox; DROP TABLE outbox", strings.Repeat("o", outbox.MaxOutboxNameLen+1)} {
		path := filepath.Join(t.TempDir(), "herald.db")
		_, openErr := sqlitestore.Open(path, sqlitestore.Config{Name: name})
		_, newErr := sqlitestore.New(db, sqlitestore.Config{Name: name})
		for _, err := range []error{openErr, newErr} {
			if err == nil {
				t.Fatalf("name %q accepted", name)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, fmt.Sprintf("sqlitestore: outbox: invalid outbox name %q: ", name)) ||
				!strings.Contains(msg, "lower-case letter") {
				t.Errorf("name %q: error %q does not say what is wrong", name, msg)
			}
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("name %q: Open created the database file (%v)", name, err)
		}
	}
}

// TestNewSharesHandle: drivers of two outboxes on one handle keep their own
// events and wake-ups, and closing the one New made leaves the handle open.
func TestNewSharesHandle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	p, err := sqlitestore.New(d.DB(), sqlitestore.Config{Name: "payments"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	woken := make(chan struct{}, 100)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Listen(lctx, func() { woken <- struct{}{} }) }()
	deadline := time.After(5 * time.Second)
	for registered := false; !registered; { // a wake-up before Listen registers is lost
		p.Notify()
		select {
		case <-woken:
			registered = true
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("no wake-up after Notify")
		}
	}
	for len(woken) > 0 {
		<-woken
	}
	enqueue(t, d, ev("order", "a", "x"))
	select {
	case <-woken:
		t.Error("an event of outbox woke the listener of payments")
	case <-time.After(50 * time.Millisecond):
	}
	enqueue(t, p, ev("order", "a", "x"), ev("order", "a", "y"))
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Error("payments' events did not wake its listener")
	}
	if n := count(t, d, `SELECT count(*) FROM {{outbox}}`); n != 1 {
		t.Errorf("outbox holds %d events, want 1", n)
	}
	if n := count(t, p, `SELECT count(*) FROM {{outbox}}`); n != 2 {
		t.Errorf("payments holds %d events, want 2", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.DB().PingContext(ctx); err != nil {
		t.Fatalf("the handle after closing the driver New made: %v", err)
	}
	enqueue(t, d, ev("order", "a", "y"))
}

// TestWithTxReturnsFnError: fn's error comes back unchanged and nothing fn
// wrote is kept.
func TestWithTxReturnsFnError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	errFn := errors.New("fn says no")
	err := d.WithTx(ctx, func(tx *sql.Tx) error {
		if _, err := outbox.NewClient(d).EnqueueTx(ctx, tx, ev("order", "rolled", "x")); err != nil {
			t.Error(err)
		}
		return errFn
	})
	if err != errFn { //nolint:errorlint // unchanged: the very error
		t.Fatalf("WithTx = %v, want fn's error itself", err)
	}
	expectRolledBack(t, d)
}

// TestWithTxPanic: a panic in fn rolls back and goes on with its value.
func TestWithTxPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want fn's panic", p)
			}
		}()
		_ = d.WithTx(ctx, func(tx *sql.Tx) error {
			if _, err := outbox.NewClient(d).EnqueueTx(ctx, tx, ev("order", "rolled", "x")); err != nil {
				t.Error(err)
			}
			panic("boom")
		})
		t.Fatal("WithTx returned after fn panicked")
	}()
	expectRolledBack(t, d)
}

// TestWithTxGoexit: fn ending its goroutine (t.Fatal in a test) rolls back
// too; the write lock is not left held.
func TestWithTxGoexit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newDriver(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.WithTx(ctx, func(tx *sql.Tx) error {
			if _, err := outbox.NewClient(d).EnqueueTx(ctx, tx, ev("order", "rolled", "x")); err != nil {
				t.Error(err)
			}
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	expectRolledBack(t, d)
}

// TestWithTxCancelled: when ctx ends inside fn, WithTx rolls back whether fn
// returns ctx's error or nil, and the connection goes back to the pool
// clean: with a pool of one, the next transaction begins and commits.
func TestWithTxCancelled(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	d.DB().SetMaxOpenConns(1)
	for _, fnErr := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		err := d.WithTx(ctx, func(tx *sql.Tx) error {
			if _, err := outbox.NewClient(d).EnqueueTx(ctx, tx, ev("order", "rolled", "x")); err != nil {
				t.Error(err)
			}
			cancel()
			if fnErr {
				return ctx.Err()
			}
			return nil
		})
		if fnErr && err != context.Canceled { //nolint:errorlint // unchanged: the very error
			t.Errorf("fn returning ctx's error: WithTx = %v, want it unchanged", err)
		}
		if !fnErr && !errors.Is(err, context.Canceled) {
			t.Errorf("fn returning nil after ctx ended: WithTx = %v, want the commit to fail", err)
		}
		expectRolledBack(t, d)
	}
}

// expectRolledBack checks that nothing of a rolled back transaction that
// enqueued for the aggregate "rolled" is kept, and that a write
// transaction, on a connection the failed one may have used, commits.
func expectRolledBack(t *testing.T, d *sqlitestore.Driver) {
	t.Helper()
	if n := count(t, d, `SELECT count(*) FROM {{outbox}}`); n != 0 {
		t.Fatalf("%d events kept from a transaction that was rolled back", n)
	}
	if n := count(t, d, `SELECT count(*) FROM {{sequences}} WHERE aggregate_id = 'rolled'`); n != 0 {
		t.Fatalf("the rolled back transaction kept its sequence")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := outbox.NewClient(d).Enqueue(ctx, ev("order", "after", "x")); err != nil {
		t.Fatalf("a write after the rollback: %v", err)
	}
	finish(t, claim(t, d, outbox.ClaimParams{}), published)
}

// TestNotify: Notify wakes the relays listening through the Driver, and
// does nothing (without blocking) once the Driver is closed.
func TestNotify(t *testing.T) {
	t.Parallel()
	d := newDriver(t)
	ctx, cancel := context.WithCancel(context.Background())
	woken := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- d.Listen(ctx, func() { woken <- struct{}{} }) }()
	// A wake-up before Listen has registered is lost, so notify until one
	// arrives.
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		d.Notify()
		select {
		case <-woken:
			got = true
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("no wake-up after Notify")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d.Notify()
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
