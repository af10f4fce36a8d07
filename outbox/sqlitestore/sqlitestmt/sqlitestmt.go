// Package sqlitestmt keeps statements prepared on a SQLite database handle,
// so that they are not parsed and planned on every call, for the handle's
// own use and for its transactions'. The outbox's SQLite driver and the
// orders' SQLite store each keep one.
//
// Statements are prepared only outside any transaction. DB.PrepareContext
// takes a connection of the pool, and inside a write transaction the pool
// may be held entirely by writers queued for that transaction's write lock:
// preparing there deadlocks the pool until the busy timeout (see
// sqlitestore.ConfigurePool). For the same reason the cache holds no lock
// while it prepares. Inside a transaction, a query not prepared yet runs as
// text on the transaction's own connection.
package sqlitestmt

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by Stmt after Close.
var ErrClosed = errors.New("sqlitestmt: statement cache closed")

// Cache holds the statements prepared on one database handle. It is safe
// for concurrent use.
type Cache struct {
	db  *sql.DB
	hot []string

	prepared atomic.Bool // every hot query is in stmts
	mu       sync.Mutex
	stmts    map[string]*sql.Stmt // prepared on db; database/sql prepares them again per connection
	closed   bool
}

// New returns an empty cache on db. hot are the queries Prepare prepares:
// those the handle's transactions run.
func New(db *sql.DB, hot ...string) *Cache {
	return &Cache{db: db, hot: hot}
}

// Prepare prepares the hot queries not prepared yet. It must not be called
// in a transaction (see the package comment). It fails harmlessly on a
// database not migrated yet, and does nothing once the cache is closed.
func (c *Cache) Prepare(ctx context.Context) error {
	if c.prepared.Load() {
		return nil
	}
	for _, q := range c.hot {
		if _, err := c.Stmt(ctx, q); errors.Is(err, ErrClosed) { //nolint:sqlclosecheck // kept in c.stmts; Close closes it
			return nil
		} else if err != nil {
			return err
		}
	}
	c.prepared.Store(true)
	return nil
}

// Stmt returns query prepared on the database, preparing it on first use,
// or ErrClosed. It must not be called in a transaction (see the package
// comment). The statement stays the cache's: Close closes it.
func (c *Cache) Stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st := c.stmts[query]
	c.mu.Unlock()
	if st != nil {
		return st, nil
	}
	// Prepared without the lock, which concurrent callers would otherwise
	// wait on for a connection.
	st, err := c.db.PrepareContext(ctx, query) //nolint:sqlclosecheck // kept in c.stmts; Close closes it
	if err != nil {
		return nil, err
	}
	kept, err := c.keep(query, st)
	if kept != st {
		// Closed outside c.mu: closing takes database/sql's connection
		// locks, and a transaction on that connection may be waiting for
		// c.mu (Tx.stmt), which would deadlock.
		_ = st.Close() //nolint:sqlclosecheck // not kept
	}
	return kept, err
}

// keep stores st as query's statement and returns it, or returns the one
// stored meanwhile, or ErrClosed.
func (c *Cache) keep(query string, st *sql.Stmt) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if prev := c.stmts[query]; prev != nil {
		return prev, nil // prepared concurrently; prev is kept
	}
	if c.stmts == nil {
		c.stmts = make(map[string]*sql.Stmt, len(c.hot))
	}
	c.stmts[query] = st
	return st, nil
}

// Tx returns tx running the cache's statements. tx must belong to the
// cache's database.
func (c *Cache) Tx(tx *sql.Tx) Tx { return Tx{c: c, tx: tx} }

// Tx is a transaction that runs the queries its cache holds as prepared
// statements (closed with the transaction) and the others as text, on the
// transaction's own connection.
type Tx struct {
	c  *Cache
	tx *sql.Tx
}

// stmt returns the prepared form of query for the transaction, or nil when
// it is not prepared.
func (t Tx) stmt(ctx context.Context, query string) *sql.Stmt {
	t.c.mu.Lock()
	st := t.c.stmts[query]
	t.c.mu.Unlock()
	if st == nil {
		return nil
	}
	return t.tx.StmtContext(ctx, st)
}

// ExecContext runs query on the transaction.
func (t Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil { //nolint:sqlclosecheck // closed with the transaction
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// QueryContext runs query on the transaction.
func (t Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil { //nolint:sqlclosecheck // closed with the transaction
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query on the transaction.
func (t Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil { //nolint:sqlclosecheck // closed with the transaction
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// Close closes the prepared statements; the database stays open. Queries
// run as text afterwards.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	stmts := c.stmts
	c.stmts = nil
	c.mu.Unlock()
	// Closed outside c.mu, as in Stmt.
	var errs []error
	for _, st := range stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}
