package testdb_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/testdb"
)

func TestPostgresSchemaIsPrivate(t *testing.T) {
	t.Parallel()
	pool := testdb.Postgres(t)
	var path string
	if err := pool.QueryRow(context.Background(), "SELECT current_schema()").Scan(&path); err != nil {
		t.Fatal(err)
	}
	if len(path) < 3 || path[:2] != "t_" {
		t.Fatalf("current_schema = %q, want a private t_ schema", path)
	}
}
