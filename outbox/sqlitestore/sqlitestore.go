// Package sqlitestore is the embedded SQLite driver of the outbox engine: an
// outbox.Driver[*sql.Tx] on modernc.org/sqlite (pure Go, no cgo).
//
// SQLite has one writer at a time. Every read-write transaction on the
// handle Open returns takes the write lock at BEGIN (BEGIN IMMEDIATE), so no
// transaction deadlocks upgrading a read lock, and the handle queues them in
// the process first come first served, so that concurrent writers do not
// starve each other in SQLite's busy handler. A claimed batch holds a write
// transaction until it is finished or released: a second relay, in this
// process or another one on the same file, waits for it, which keeps
// per-aggregate order (SPEC G3). Application writers wait for it too, for up
// to BusyTimeout, so a batch should be published quickly.
//
// Each pending event carries a head flag, set on the lowest sequence of its
// aggregate, and a claim reads a partial index of the due heads: its cost
// does not grow with the backlog queued behind the heads.
//
// Wake-ups are in-process: InsertTx, replays and discards wake the relays
// listening on the same Driver. Relays in other processes on the same file
// find new events with their fallback poll.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore/sqlitestmt"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DriverName is the database/sql driver the package uses.
const DriverName = "sqlite"

// BusyTimeout is how long a statement waits for another connection's write
// lock before it fails with SQLITE_BUSY.
const BusyTimeout = 10 * time.Second

var _ outbox.Driver[*sql.Tx] = (*Driver)(nil)

// Driver stores the outbox in one SQLite database. It is safe for
// concurrent use.
type Driver struct {
	db     *sql.DB
	ownsDB bool
	now    func() time.Time

	wakes wakeHub
	stmts *sqlitestmt.Cache // the hot queries
}

// DSN returns the data source name Open uses for the database file at path:
// WAL journal, synchronous=NORMAL, a busy timeout, foreign keys on, and
// _txlock=immediate so that every read-write transaction takes the write
// lock at BEGIN. Applications that open their own handle for New should use
// it (or the same settings). If path already has query parameters, the
// settings are appended to them.
func DSN(path string) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(BusyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + q.Encode()
}

// Open opens (creating if need be) the SQLite database file at path with the
// settings of DSN and a connection pool sized by ConfigurePool. The handle's
// read-write transactions queue for the write lock in the process, first
// come first served, for up to BusyTimeout, before SQLite's own busy timeout
// applies to other processes; autocommit writes (db.Exec outside a
// transaction) bypass the queue, so write in transactions under load. Open
// does not migrate; call Migrate. Close closes the database.
func Open(path string) (*Driver, error) {
	if path == "" {
		return nil, errors.New("sqlitestore: empty database path")
	}
	if isMemory(path) {
		// Every connection of the pool would get a database of its own.
		return nil, fmt.Errorf("sqlitestore: in-memory database %q is not supported; use a file", path)
	}
	connector, err := newGatedConnector(DSN(path))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	db := sql.OpenDB(connector)
	ConfigurePool(db)
	ctx, cancel := context.WithTimeout(context.Background(), BusyTimeout+5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	d := New(db)
	d.ownsDB = true
	_ = d.stmts.Prepare(ctx) // fails harmlessly on a database not migrated yet
	return d, nil
}

// ConfigurePool sizes db's connection pool for the driver. A claimed batch
// holds one connection (and the write lock) until it ends and never needs a
// second one, and no other method of the driver holds more than one
// connection at a time, so writers queued for the write lock, each holding a
// connection, cannot starve the batch of the connection it needs to finish.
// Application code must follow the same rule: inside a write transaction,
// use only the transaction (no db.Query, no db.Prepare), or a burst of
// writers that fills the pool deadlocks it until their busy timeout. The
// pool is large enough that WAL readers are rarely queued behind waiting
// writers, and keeps its connections open, since opening one applies every
// setting.
func ConfigurePool(db *sql.DB) {
	n := max(16, 4*runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(10 * time.Minute)
}

func isMemory(path string) bool {
	return path == ":memory:" || strings.HasPrefix(path, "file::memory:") ||
		strings.Contains(path, "mode=memory")
}

// New returns a Driver on a handle the caller opened with DriverName. The
// handle should use the settings of DSN, _txlock=immediate above all (without
// it, a claim could fail to upgrade its read lock), and ConfigurePool. Its
// writers wait for each other in SQLite's busy handler, which is not fair:
// under load a writer can wait far longer than the others (Open's handle
// queues them). Transactions given to InsertTx must be begun on this handle.
// Close leaves the handle open.
func New(db *sql.DB) *Driver {
	return &Driver{db: db, now: time.Now, stmts: sqlitestmt.New(db, hotQueries...)}
}

// DB returns the database handle, for the application's own tables.
func (d *Driver) DB() *sql.DB { return d.db }

// Close ends every Listen call, closes the driver's prepared statements
// and, if Open opened the database, the database.
func (d *Driver) Close() error {
	d.wakes.close()
	errs := []error{d.stmts.Close()}
	if d.ownsDB {
		errs = append(errs, d.db.Close())
	}
	return errors.Join(errs...)
}

// hotQueries are the statements of enqueueing, claiming and finishing. The
// driver prepares them once on the database (and database/sql then once per
// pooled connection, on the transaction's own connection), so that they are
// not parsed and planned on every call.
var hotQueries = []string{
	bumpSequenceSQL, insertEventSQL,
	claimSQL, claimMoveOnSQL, deletePublishedSQL, scheduleRetrySQL, moveToDLQSQL, deleteOneSQL,
}

// prepare prepares the hot queries not prepared yet. It must not be called
// in a transaction (see package sqlitestmt).
func (d *Driver) prepare(ctx context.Context) error { return d.stmts.Prepare(ctx) }

// txExec, txQuery and txQueryRow run a query on tx, prepared if it is hot.

func (d *Driver) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	return d.stmts.Tx(tx).ExecContext(ctx, query, args...)
}

func (d *Driver) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	return d.stmts.Tx(tx).QueryContext(ctx, query, args...)
}

func (d *Driver) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	return d.stmts.Tx(tx).QueryRowContext(ctx, query, args...)
}

// WithTx runs fn in a new transaction and commits it when fn returns nil. It
// rolls back when fn fails or panics.
func (d *Driver) WithTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitestore: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlitestore: commit: %w", err)
	}
	return nil
}

// Listen calls wake whenever this Driver may have committed new events
// (InsertTx, replays, discards), until ctx is done or the Driver is closed.
// wake is called from the writer's goroutine and must not block. A wake-up
// can come before the writer's commit; the relay's claim then waits for the
// writer's lock. Writes from other processes on the same file do not wake
// it; the relay's fallback poll finds them.
func (d *Driver) Listen(ctx context.Context, wake func()) error {
	closed, unregister := d.wakes.register(wake)
	if closed == nil {
		return errClosed
	}
	defer unregister()
	select {
	case <-ctx.Done():
		return nil
	case <-closed:
		return errClosed
	}
}

var errClosed = errors.New("sqlitestore: driver closed")

// wakeHub is the in-process broadcaster behind Listen.
type wakeHub struct {
	mu     sync.Mutex
	next   int
	wakes  map[int]func()
	closed chan struct{} // made on first use; closed by close
	done   bool
}

// register adds wake and returns a channel closed when the hub closes, or
// nil if it is closed already.
func (h *wakeHub) register(wake func()) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return nil, func() {}
	}
	if h.closed == nil {
		h.closed = make(chan struct{})
		h.wakes = make(map[int]func())
	}
	id := h.next
	h.next++
	h.wakes[id] = wake
	return h.closed, func() {
		h.mu.Lock()
		delete(h.wakes, id)
		h.mu.Unlock()
	}
}

// signal calls every registered wake function.
func (h *wakeHub) signal() {
	h.mu.Lock()
	if len(h.wakes) == 0 {
		h.mu.Unlock()
		return
	}
	fns := make([]func(), 0, len(h.wakes))
	for _, w := range h.wakes {
		fns = append(fns, w)
	}
	h.mu.Unlock()
	for _, w := range fns {
		w()
	}
}

func (h *wakeHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return
	}
	h.done = true
	if h.closed != nil {
		close(h.closed)
	}
	h.wakes = nil
}

// micros converts t to the stored form: unix microseconds, UTC.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros converts a stored time back; NULL becomes the zero time.
func fromMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return time.UnixMicro(us.Int64).UTC()
}

func fromMicrosPtr(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := time.UnixMicro(us.Int64).UTC()
	return &t
}
