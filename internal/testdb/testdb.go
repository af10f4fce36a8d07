// Package testdb gives each test a database of its own on the machine's real
// PostgreSQL (a private schema, dropped at cleanup) or SQLite (a file in the
// test's temp dir).
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresURL is the server tests use: $HERALD_TEST_POSTGRES_URL, or the
// machine's local PostgreSQL.
func PostgresURL() string {
	if u := os.Getenv("HERALD_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// PostgresSchema creates a fresh schema and returns a connection string whose
// connections use it as their search_path. The schema is dropped when the
// test ends.
func PostgresSchema(t testing.TB) (url, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schema = "t_" + randomHex(8)
	conn, err := pgx.Connect(ctx, PostgresURL())
	if err != nil {
		t.Fatalf("testdb: connect to PostgreSQL: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("testdb: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, PostgresURL())
		if err != nil {
			t.Errorf("testdb: connect for cleanup: %v", err)
			return
		}
		defer func() { _ = conn.Close(ctx) }()
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("testdb: drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(PostgresURL(), "?") {
		sep = "&"
	}
	return PostgresURL() + sep + "search_path=" + schema, schema
}

// Postgres returns a pool on a fresh schema (see PostgresSchema), closed
// when the test ends.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url, _ := PostgresSchema(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("testdb: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// SQLitePath returns a path for a new SQLite database in the test's temp dir.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "herald.db")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DropSlot drops a test's replication slot and the publication of the same
// name, ending a walsender that still streams the slot (a killed relay's
// may still be going away) and trying again until it lets go.
func DropSlot(t testing.TB, slot string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresURL())
	if err != nil {
		t.Errorf("drop slot %s: %v", slot, err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	for {
		_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
		if err == nil {
			_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		}
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("drop slot %s: %v", slot, err)
	}
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{slot}.Sanitize()); err != nil {
		t.Errorf("drop publication %s: %v", slot, err)
	}
}
