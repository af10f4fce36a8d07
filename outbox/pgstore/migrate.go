package pgstore

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// MigrationTable records which of the outbox's migrations are applied. It is
// the outbox's own, so that an application's migrations in the same schema
// (the orders service's, for one) keep a separate history.
const MigrationTable = "herald_outbox_migrations"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the outbox schema's pending migrations to the pool's
// current schema. Concurrent callers (several relays starting at once) take
// turns on an advisory lock.
func (d *Driver) Migrate(ctx context.Context) error {
	p, err := d.provider(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	return nil
}

// Migration is the state of one schema migration.
type Migration struct {
	Version   int64
	Name      string    // file name, e.g. 00001_outbox.sql
	AppliedAt time.Time // zero while pending
}

// Applied reports whether the migration has been applied.
func (m Migration) Applied() bool { return !m.AppliedAt.IsZero() }

// String renders the migration as a status line.
func (m Migration) String() string {
	state := "pending"
	if m.Applied() {
		state = "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%5d  %-40s %s", m.Version, m.Name, state)
}

// Migrations is the state of every migration, oldest first.
type Migrations []Migration

// String renders one status line per migration.
func (ms Migrations) String() string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Pending counts the migrations not yet applied.
func (ms Migrations) Pending() int {
	n := 0
	for _, m := range ms {
		if !m.Applied() {
			n++
		}
	}
	return n
}

// MigrationStatus reports which migrations are applied (for herald migrate
// --status). It creates the empty version table when there is none.
func (d *Driver) MigrationStatus(ctx context.Context) (Migrations, error) {
	p, err := d.provider(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = p.Close() }()
	status, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: migration status: %w", err)
	}
	out := make(Migrations, 0, len(status))
	for _, s := range status {
		m := Migration{Version: s.Source.Version, Name: path.Base(s.Source.Path)}
		if s.State == goose.StateApplied {
			m.AppliedAt = s.AppliedAt
		}
		out = append(out, m)
	}
	return out, nil
}

// provider returns a goose provider on the pool; closing it closes only the
// *sql.DB wrapper, not the pool.
func (d *Driver) provider(ctx context.Context) (*goose.Provider, error) {
	db := stdlib.OpenDBFromPool(d.pool)
	// Advisory locks are database-wide: key the lock on the schema, so that
	// migrations of different schemas (tests, tenants) do not wait on each
	// other while two migrators of one schema still take turns.
	var schema *string
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	if schema == nil {
		_ = db.Close()
		return nil, fmt.Errorf("pgstore: migrate: no schema on the search_path exists")
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(*schema + "." + MigrationTable))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64())), //nolint:gosec // any 64 bits make a lock id
		lock.WithLockTimeout(1, 300),      // poll every second for up to 5 minutes
	)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(MigrationTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	return p, nil
}
