package sqlitestore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
)

// MigrationTable is the table in which the driver's migrations record their
// versions. It is the driver's own, so that an application can keep its own
// migration set, with another table, in the same database. (pgstore uses the
// same name.)
const MigrationTable = "herald_outbox_migrations"

//go:embed migrations/*.sql
var migrationFiles embed.FS

func (d *Driver) migrator() (*goose.Provider, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: migrations: %w", err)
	}
	// The provider is not closed: Close would close d.db.
	p, err := goose.NewProvider(goose.DialectSQLite3, d.db, sub,
		goose.WithTableName(MigrationTable),
		goose.WithDisableGlobalRegistry(true), // the application's Go migrations are not ours
	)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: migrations: %w", err)
	}
	return p, nil
}

// Migrate applies the driver's pending migrations, each in a transaction
// (which holds the write lock, so two processes migrating at once take
// turns; the migrations are written to be repeatable).
func (d *Driver) Migrate(ctx context.Context) error {
	p, err := d.migrator()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlitestore: migrate: %w", err)
	}
	if err := d.prepare(ctx); err != nil {
		return fmt.Errorf("sqlitestore: prepare statements: %w", err)
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

// MigrationStatus reports which of the driver's migrations are applied (for
// herald migrate --status). It creates the empty version table when there is
// none.
func (d *Driver) MigrationStatus(ctx context.Context) (Migrations, error) {
	p, err := d.migrator()
	if err != nil {
		return nil, err
	}
	status, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: migration status: %w", err)
	}
	out := make(Migrations, 0, len(status))
	for _, s := range status {
		m := Migration{Version: s.Source.Version, Name: path.Base(s.Source.Path)}
		if s.State == goose.StateApplied {
			m.AppliedAt = s.AppliedAt.UTC()
		}
		out = append(out, m)
	}
	return out, nil
}
