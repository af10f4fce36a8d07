// Package sqlitestore is the embedded SQLite driver of the outbox engine: an
// outbox.Driver[*sql.Tx] on modernc.org/sqlite (pure Go, no cgo).
//
// A Driver serves one named outbox (Config.Name, default outbox.DefaultName)
// and names every object of it after it (outbox.NamesOf): the pending events
// are in the table NAME, the dead letters in NAME_dlq, the per-aggregate
// counters in NAME_sequences and the schema's version in NAME_migrations;
// indexes and triggers start with the name. Outboxes of other names can
// share the database file and handle, each with its own events, numbering,
// dead letters and relays.
//
// SQLite has one writer at a time. Every read-write transaction on the
// handle Open returns takes the write lock at BEGIN (BEGIN IMMEDIATE), so no
// transaction deadlocks upgrading a read lock, and the handle queues them in
// the process first come first served, so that concurrent writers do not
// starve each other in SQLite's busy handler. A claimed batch holds a write
// transaction until it is finished or released: a second relay, in this
// process or another one on the same file, waits for it. That is how each
// aggregate keeps its order: a claim takes only the pending event with the
// lowest sequence of its aggregate, and no other claim runs while a batch
// holds one, so an aggregate's events are published one at a time, in
// sequence order. Application writers wait for a batch too, for up to
// BusyTimeout, so a batch should be published quickly.
//
// Each pending event carries a head flag, set on the lowest sequence of its
// aggregate, and a claim reads a partial index of the due heads: its cost
// does not grow with the backlog queued behind the heads.
//
// Wake-ups are in-process: InsertTx, replays, discards and Notify wake the
// relays listening on the same Driver. Relays in other processes on the same
// file, or listening through another Driver, find new events with their
// fallback poll.
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

	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
	"github.com/heraldhq/herald/outbox/sqlitestore/sqlitestmt"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DriverName is the database/sql driver the package uses.
const DriverName = "sqlite"

// BusyTimeout is how long a statement waits for another connection's write
// lock before it fails with SQLITE_BUSY.
const BusyTimeout = 10 * time.Second

var _ outbox.Driver[*sql.Tx] = (*Driver)(nil)

// Config configures a Driver.
type Config struct {
	// Name is the outbox's name, after which its tables, indexes and
	// triggers are named (outbox.NamesOf); default outbox.DefaultName. An
	// outbox keeps its name for life: a Driver of another name on the same
	// database sees none of its events.
	Name string
}

// Driver stores one outbox in one SQLite database. It is safe for
// concurrent use.
type Driver struct {
	db     *sql.DB
	ownsDB bool
	now    func() time.Time

	names      outbox.Names
	q          queries       // every query, rendered for names
	migrations migration.Set // the migration templates, rendered for names

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
// settings of DSN and a connection pool sized by ConfigurePool, for the
// outbox cfg names. The handle's read-write transactions queue for the write
// lock in the process, first come first served, for up to BusyTimeout,
// before SQLite's own busy timeout applies to other processes; autocommit
// writes (db.Exec outside a transaction) bypass the queue, so write in
// transactions under load. Open does not migrate; call Migrate. Close
// closes the database.
func Open(path string, cfg Config) (*Driver, error) {
	names, err := namesOf(cfg)
	if err != nil {
		return nil, err
	}
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
	d := newDriver(db, names)
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
// Drivers of outboxes of other names may share the handle. New fails only
// for an invalid cfg.Name. Close leaves the handle open.
func New(db *sql.DB, cfg Config) (*Driver, error) {
	names, err := namesOf(cfg)
	if err != nil {
		return nil, err
	}
	return newDriver(db, names), nil
}

// namesOf checks cfg's outbox name and derives the names of its objects.
func namesOf(cfg Config) (outbox.Names, error) {
	names, err := outbox.NamesOf(cfg.Name)
	if err != nil {
		return outbox.Names{}, fmt.Errorf("sqlitestore: %w", err)
	}
	return names, nil
}

// newDriver renders every query and the migrations for names, once: no hot
// path builds query text (only the dead-letter filters append a condition),
// and the statement cache knows the hot queries by their rendered text.
func newDriver(db *sql.DB, names outbox.Names) *Driver {
	r := placeholders(names)
	q := renderQueries(r)
	return &Driver{
		db:    db,
		now:   time.Now,
		names: names,
		q:     q,
		migrations: migration.Set{
			Owner: "sqlitestore", FS: migrationFiles, Dir: "migrations", Dialect: goose.DialectSQLite3,
			Table: names.Migrations, Names: r,
		},
		stmts: sqlitestmt.New(db, q.hot()...),
	}
}

// DB returns the database handle, for the application's own tables.
func (d *Driver) DB() *sql.DB { return d.db }

// Names returns the names of the driver's outbox and of its tables.
func (d *Driver) Names() outbox.Names { return d.names }

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

// WithTx begins a read-write transaction on DB(), runs fn in it and commits
// it when fn returns nil. When fn fails, panics or ends its goroutine
// (runtime.Goexit, as t.Fatal does), WithTx rolls the transaction back and
// returns fn's error unchanged, or lets the panic go on. A cancelled ctx
// leaves nothing behind: database/sql rolls the transaction back when ctx
// ends, a rollback needs no context, and the connection goes back to the
// pool outside any transaction (or is dropped, if SQLite interrupted one of
// its statements), with the write lock free.
//
// WithTx does not call Notify: InsertTx has already woken this Driver's
// relays for the events fn enqueued, and the claim a wake-up starts waits
// for this transaction's write lock, so it sees the commit.
func (d *Driver) WithTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitestore: begin: %w", err)
	}
	committing := false
	defer func() {
		if !committing {
			// fn failed, panicked or called runtime.Goexit; the error, if
			// any, is fn's to report. (After ctx ended, database/sql has
			// rolled back already and this returns sql.ErrTxDone.)
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	committing = true
	if err := tx.Commit(); err != nil {
		// A failed commit ends the transaction too: modernc rolls back
		// whatever SQLite kept open.
		return fmt.Errorf("sqlitestore: commit: %w", err)
	}
	return nil
}

// Notify wakes the relays listening through this Driver (Listen), at once
// and in-process: the one call for "I committed events" that callers who
// commit their own transaction make on every driver. InsertTx, replays and
// discards wake them by themselves, so here it only repeats the wake-up;
// pgstore's Notify also reaches relays in other processes. It never blocks.
// Relays in other processes, or listening through another Driver, find the
// events with their fallback poll.
func (d *Driver) Notify() { d.wakes.signal() }

// Listen calls wake whenever this Driver may have committed new events
// (InsertTx, replays, discards, Notify), until ctx is done or the Driver is
// closed. wake is called from the writer's goroutine and must not block. A
// wake-up can come before the writer's commit; the relay's claim then waits
// for the writer's lock. Writes from other processes on the same file, or
// through another Driver, do not wake it; the relay's fallback poll finds
// them.
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
