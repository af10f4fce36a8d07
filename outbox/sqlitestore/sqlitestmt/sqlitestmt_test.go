package sqlitestmt_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"

	"github.com/heraldhq/herald/outbox/sqlitestore/sqlitestmt"

	_ "modernc.org/sqlite"
)

const (
	insertSQL = `INSERT INTO t (x) VALUES (?1)`
	countSQL  = `SELECT count(*) FROM t`
	sumSQL    = `SELECT coalesce(sum(x), 0) FROM t WHERE x > ?1`
)

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+t.TempDir()+"/s.db?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// inTx runs fn in a transaction of db through c and commits it.
func inTx(t *testing.T, db *sql.DB, c *sqlitestmt.Cache, fn func(q sqlitestmt.Tx)) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	fn(c.Tx(tx))
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	c := sqlitestmt.New(db, insertSQL, countSQL)

	// Before the table exists nothing can be prepared: queries run as text.
	if err := c.Prepare(ctx); err == nil {
		t.Fatal("Prepare before the table exists: no error")
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	inTx(t, db, c, func(q sqlitestmt.Tx) {
		if _, err := q.ExecContext(ctx, insertSQL, 1); err != nil {
			t.Fatal(err)
		}
	})

	if err := c.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 { // concurrent first use of a query keeps one statement
		wg.Go(func() {
			st, err := c.Stmt(ctx, sumSQL) //nolint:sqlclosecheck // the cache's
			if err != nil {
				t.Error(err)
				return
			}
			var sum int
			if err := st.QueryRowContext(ctx, i).Scan(&sum); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	inTx(t, db, c, func(q sqlitestmt.Tx) {
		if _, err := q.ExecContext(ctx, insertSQL, 2); err != nil {
			t.Fatal(err)
		}
		var n, sum int
		if err := q.QueryRowContext(ctx, countSQL).Scan(&n); err != nil || n != 2 {
			t.Fatalf("count = %d, %v; want 2", n, err)
		}
		rows, err := q.QueryContext(ctx, sumSQL, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			if err := rows.Scan(&sum); err != nil {
				t.Fatal(err)
			}
		}
		if err := rows.Err(); err != nil || sum != 3 {
			t.Fatalf("sum = %d, %v; want 3", sum, err)
		}
	})

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stmt(ctx, countSQL); !errors.Is(err, sqlitestmt.ErrClosed) { //nolint:sqlclosecheck // none returned
		t.Errorf("Stmt after Close: %v, want ErrClosed", err)
	}
	fresh := sqlitestmt.New(db, countSQL)
	if err := fresh.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Prepare(ctx); err != nil {
		t.Errorf("Prepare after Close: %v", err)
	}
	inTx(t, db, c, func(q sqlitestmt.Tx) { // as text
		var n int
		if err := q.QueryRowContext(ctx, countSQL).Scan(&n); err != nil || n != 2 {
			t.Fatalf("count after Close = %d, %v; want 2", n, err)
		}
	})
}
