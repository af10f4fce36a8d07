// Package migration applies and reports embedded goose migrations: the outbox
// drivers' (pgstore, sqlitestore) and those of applications that keep their
// own schema beside the outbox, as Herald's orders service does. Each set
// keeps its own files and its own version table; this package holds what
// they share: the goose provider, the schema-keyed lock on PostgreSQL,
// placeholders for names chosen at run time, and the status type.
package migration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"strings"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

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

// List is the state of every migration of a set, oldest first.
type List []Migration

// String renders one status line per migration.
func (ms List) String() string {
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Pending counts the migrations not yet applied.
func (ms List) Pending() int { return Pending(ms) }

// Pending counts the migrations of ms not yet applied, for lists of types
// that wrap a Migration.
func Pending[M interface{ Applied() bool }](ms []M) int {
	n := 0
	for _, m := range ms {
		if !m.Applied() {
			n++
		}
	}
	return n
}

// Migrator applies and reports one package's migrations: the outbox
// drivers and the orders stores are each one.
type Migrator interface {
	Migrate(ctx context.Context) error
	MigrationStatus(ctx context.Context) (List, error)
}

// Set is one package's embedded migrations.
type Set struct {
	Owner   string        // the package, which prefixes errors: "pgstore: migrate: …"
	FS      fs.FS         // holds the .sql files in Dir
	Dir     string        // e.g. "migrations"
	Dialect goose.Dialect // goose.DialectPostgres or goose.DialectSQLite3
	// Table is the goose version table. Each set has its own, so that
	// several sets in one schema keep separate histories.
	Table string
	// Names, when set, rewrites every file before goose reads it: an outbox
	// named "payments" turns {{outbox}} into payments. Goose records versions,
	// not text, so the same files serve every name.
	Names *strings.Replacer
}

// Up applies the set's pending migrations to db. On PostgreSQL, concurrent
// callers (several relays starting at once) take turns on an advisory lock
// keyed on the current schema and the version table; on SQLite each
// migration runs in a transaction, which holds the write lock.
func (s Set) Up(ctx context.Context, db *sql.DB) error {
	return s.UpTo(ctx, db, goose.MaxVersion)
}

// UpTo applies the set's pending migrations up to and including version,
// as Up does; tests use it to write data under an older schema.
func (s Set) UpTo(ctx context.Context, db *sql.DB, version int64) error {
	p, err := s.provider(ctx, db)
	if err == nil {
		_, err = p.UpTo(ctx, version)
	}
	if err != nil {
		return fmt.Errorf("%s: migrate: %w", s.Owner, err)
	}
	return nil
}

// DownTo rolls the set's migrations back until version is the last one
// applied; tests use it to check the Down migrations.
func (s Set) DownTo(ctx context.Context, db *sql.DB, version int64) error {
	p, err := s.provider(ctx, db)
	if err == nil {
		_, err = p.DownTo(ctx, version)
	}
	if err != nil {
		return fmt.Errorf("%s: migrate down: %w", s.Owner, err)
	}
	return nil
}

// Status reports which of the set's migrations are applied to db. It
// creates the empty version table when there is none.
func (s Set) Status(ctx context.Context, db *sql.DB) (List, error) {
	p, err := s.provider(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("%s: migrate: %w", s.Owner, err)
	}
	status, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: migration status: %w", s.Owner, err)
	}
	out := make(List, 0, len(status))
	for _, st := range status {
		m := Migration{Version: st.Source.Version, Name: path.Base(st.Source.Path)}
		if st.State == goose.StateApplied {
			m.AppliedAt = st.AppliedAt.UTC()
		}
		out = append(out, m)
	}
	return out, nil
}

// provider returns a goose provider of the set on db. It is not to be
// closed: Close would close db, which belongs to the caller.
func (s Set) provider(ctx context.Context, db *sql.DB) (*goose.Provider, error) {
	fsys, err := s.files()
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(s.Table),
		goose.WithDisableGlobalRegistry(true), // the application's Go migrations are not ours
	}
	if s.Dialect == goose.DialectPostgres {
		locker, err := s.schemaLocker(ctx, db)
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(s.Dialect, db, fsys, opts...)
}

// files returns the set's directory, with Names applied to every file.
func (s Set) files() (fs.FS, error) {
	dir, err := fs.Sub(s.FS, s.Dir)
	if err != nil || s.Names == nil {
		return dir, err
	}
	out := fstest.MapFS{}
	err = fs.WalkDir(dir, ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := fs.ReadFile(dir, name)
		if err != nil {
			return err
		}
		out[name] = &fstest.MapFile{Data: []byte(s.Names.Replace(string(b))), Mode: 0o444}
		return nil
	})
	return out, err
}

// schemaLocker returns a PostgreSQL session lock for migrating the set in
// db's current schema. Advisory locks are database-wide: the lock is keyed
// on the schema and the version table, so that migrations of other schemas
// (tests, tenants) and of other sets do not wait on this one, while two
// migrators of one set and schema still take turns.
func (s Set) schemaLocker(ctx context.Context, db *sql.DB) (lock.SessionLocker, error) {
	var schema *string
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return nil, err
	}
	if schema == nil {
		return nil, errors.New("no schema on the search_path exists")
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(*schema + "." + s.Table))
	return lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64())), //nolint:gosec // any 64 bits make a lock id
		lock.WithLockTimeout(1, 300),      // poll every second for up to 5 minutes
	)
}
