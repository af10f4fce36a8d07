package sqliteorders

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"

	"github.com/pressly/goose/v3"

	"github.com/heraldhq/herald/internal/ordersvc"
)

//go:embed migrations/*.sql
var migrations embed.FS

func (s *Store) provider() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys,
		goose.WithTableName(ordersvc.MigrationTable),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: migrations: %w", err)
	}
	return p, nil
}

// Migrate applies the orders schema's pending migrations, recording them in
// ordersvc.MigrationTable.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqliteorders: migrate: %w", err)
	}
	if err := s.prepare(ctx); err != nil {
		return fmt.Errorf("sqliteorders: migrate: prepare statements: %w", err)
	}
	return nil
}

// MigrationStatus reports which migrations are applied. It creates the
// empty version table when there is none.
func (s *Store) MigrationStatus(ctx context.Context) (ordersvc.Migrations, error) {
	p, err := s.provider()
	if err != nil {
		return nil, err
	}
	status, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqliteorders: migration status: %w", err)
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
