package pgorders

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/heraldhq/herald/internal/ordersvc"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the orders schema's pending migrations to the pool's
// current schema, recording them in ordersvc.MigrationTable. Concurrent
// callers take turns on an advisory lock keyed on the schema.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("pgorders: migrate: %w", err)
	}
	return nil
}

// MigrationStatus reports which migrations are applied. It creates the
// empty version table when there is none.
func (s *Store) MigrationStatus(ctx context.Context) (ordersvc.Migrations, error) {
	p, err := s.provider(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = p.Close() }()
	status, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgorders: migration status: %w", err)
	}
	out := make(ordersvc.Migrations, 0, len(status))
	for _, st := range status {
		m := ordersvc.Migration{Version: st.Source.Version, Name: path.Base(st.Source.Path)}
		if st.State == goose.StateApplied {
			m.AppliedAt = st.AppliedAt.UTC()
		}
		out = append(out, m)
	}
	return out, nil
}

// provider returns a goose provider on the pool; closing it closes only the
// *sql.DB wrapper, not the pool.
func (s *Store) provider(ctx context.Context) (*goose.Provider, error) {
	db := stdlib.OpenDBFromPool(s.pool)
	fail := func(err error) (*goose.Provider, error) {
		_ = db.Close()
		return nil, fmt.Errorf("pgorders: migrate: %w", err)
	}
	var schema *string
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fail(err)
	}
	if schema == nil {
		return fail(fmt.Errorf("no schema on the search_path exists"))
	}
	// Advisory locks are database-wide: key the lock on the schema and the
	// version table, so that other schemas and the outbox's migrations do
	// not wait on this one.
	h := fnv.New64a()
	_, _ = h.Write([]byte(*schema + "." + ordersvc.MigrationTable))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64())), //nolint:gosec // any 64 bits make a lock id
		lock.WithLockTimeout(1, 300),      // poll every second for up to 5 minutes
	)
	if err != nil {
		return fail(err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fail(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(ordersvc.MigrationTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return fail(err)
	}
	return p, nil
}
