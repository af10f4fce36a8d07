// Package pgcdc is the change-data-capture source of the outbox engine on
// PostgreSQL: instead of claiming rows from the outbox table, it reads the
// table's inserts from the write-ahead log through logical replication
// (the built-in pgoutput plugin) and hands them to an outbox.Relay in
// commit order.
//
//	driver, _ := pgstore.New(pool, pgstore.Config{Name: "payments"})
//	src, err := pgcdc.New(driver, replicationConnString, pgcdc.Config{})
//	if err != nil { ... }
//	if err := src.Setup(ctx); err != nil { ... } // checks, publication, slot
//	relay := outbox.NewRelay(src, publisher, outbox.RelayConfig{})
//	err = relay.Run(ctx)
//
// The outbox has one replication slot (Config.Slot, default herald_NAME) and
// one publication of its table (Config.Publication, default herald_NAME).
// The slot can be streamed by one connection at a time: a second relay
// waits, saying so in its log, and takes over when the first one goes. The
// slot's confirmed position moves past a transaction only once every event
// it wrote was acknowledged by the broker (or dead-lettered, or parked), so
// a relay that dies is followed by one that starts again from there: events
// in flight are published again, with the same ids.
//
// Writers may keep their rows or delete them in the writing transaction
// (pgstore.Config.DeleteInTx): the write-ahead log carries the insert
// either way. A kept row is deleted once its event is acknowledged, so the
// polling relay still works on the same tables. Or they may write no row
// at all, only a logical decoding message that carries the event
// (pgstore.Config.WALMessages): the cheapest write, and the least for the
// server to decode.
//
// A poison event is dead-lettered into the outbox's dead-letter table as
// the polling relay does it; its aggregate's later events are then written
// back into the outbox table (parked) and stay there until an operator
// replays or discards the dead letter (herald dlq, the web UI), after which
// the source reads them back from the table, in sequence order, ahead of
// the aggregate's newer events. docs/DESIGN.md describes the rules.
package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// Defaults of Config.
const (
	DefaultStatusInterval = 10 * time.Second
	DefaultRetryInterval  = time.Second
	DefaultCheckInterval  = time.Second
	DefaultMaxBuffered    = 50_000
)

// Config tunes a Source. The zero value is usable.
type Config struct {
	// Slot names the replication slot; default "herald_" + the outbox's
	// name. Slots belong to the whole server: outboxes of one name in two
	// databases of one server need a Slot each.
	Slot string
	// Publication names the publication of the outbox table; default
	// "herald_" + the outbox's name.
	Publication string
	// StatusInterval is the longest time between two status updates to the
	// server (they also answer its keepalives, so that it does not end the
	// connection after wal_sender_timeout); default DefaultStatusInterval.
	StatusInterval time.Duration
	// RetryInterval is how long the source waits before it tries again to
	// take a slot that another relay streams, or to reconnect after losing
	// its connection; default DefaultRetryInterval.
	RetryInterval time.Duration
	// CheckInterval is how often parked aggregates are checked for a
	// replayed or discarded dead letter; default DefaultCheckInterval.
	CheckInterval time.Duration
	// MaxBuffered is the most events read from the log ahead of the relay;
	// the stream pauses beyond it. Default DefaultMaxBuffered.
	MaxBuffered int
	// MoveOnPastDeadLetters lets an aggregate's later events flow while an
	// earlier one is dead-lettered, instead of parking them. Set it as the
	// relay's RelayConfig.MoveOnPastDeadLetters.
	MoveOnPastDeadLetters bool
	// Logger receives the source's log; nil discards it.
	Logger *slog.Logger
}

func (c Config) withDefaults(name string) Config {
	if c.Slot == "" {
		c.Slot = "herald_" + name
	}
	if c.Publication == "" {
		c.Publication = "herald_" + name
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = DefaultStatusInterval
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = DefaultMaxBuffered
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrNotLogical is Check's error when the server's wal_level is not logical.
var ErrNotLogical = errors.New("pgcdc: PostgreSQL's wal_level is not logical")

// ErrNoReplication is Check's error when the role may not replicate.
var ErrNoReplication = errors.New("pgcdc: the database role lacks the REPLICATION attribute")

// Source is an outbox.Source that reads the outbox's inserts from the
// write-ahead log. Listen streams the log (the relay calls it); Claim hands
// the events read to the relay's workers. It is safe for concurrent use.
type Source struct {
	d     *pgstore.Driver
	pool  *pgxpool.Pool
	repl  *pgconn.Config
	cfg   Config
	names outbox.Names
	table string // the outbox table, schema-qualified
	sql   statements

	mu     sync.Mutex
	q      queue
	wake   func()
	status *statusSender // the running session's
	space  chan struct{} // a signal that buffered events were finished

	streaming atomic.Bool

	// parkMu orders the writes and reads of parked rows: a release reads
	// what parking wrote.
	parkMu sync.Mutex
}

// statements are the source's SQL with the outbox's names.
type statements struct {
	park, deleteRows, countRows, heldAggregates, loadRows, openDeadLetters string
}

// New returns a source for the outbox of driver. replConn is a connection
// string for the same database; the source adds replication=database
// itself. Call Setup before the relay runs.
func New(driver *pgstore.Driver, replConn string, cfg Config) (*Source, error) {
	names := driver.Names()
	cfg = cfg.withDefaults(names.Name)
	if !validIdent(cfg.Slot) {
		return nil, fmt.Errorf("pgcdc: invalid slot name %q: use lower-case letters, digits and underscores, at most 63 bytes", cfg.Slot)
	}
	if !validIdent(cfg.Publication) {
		return nil, fmt.Errorf("pgcdc: invalid publication name %q: use lower-case letters, digits and underscores, at most 63 bytes", cfg.Publication)
	}
	rc, err := pgconn.ParseConfig(replConn)
	if err != nil {
		return nil, fmt.Errorf("pgcdc: replication connection: %w", err)
	}
	rc.RuntimeParams["replication"] = "database"
	rc.RuntimeParams["datestyle"] = "ISO"
	rc.RuntimeParams["timezone"] = "UTC"
	if rc.RuntimeParams["application_name"] == "" {
		rc.RuntimeParams["application_name"] = "herald-cdc"
	}
	r := strings.NewReplacer("{{outbox}}", pgx.Identifier{names.Name}.Sanitize(), "{{dlq}}", pgx.Identifier{names.DeadLetters}.Sanitize())
	s := &Source{
		d:     driver,
		pool:  driver.Pool(),
		repl:  rc,
		cfg:   cfg,
		names: names,
		space: make(chan struct{}, 1),
		sql: statements{
			park:            r.Replace(parkSQL),
			deleteRows:      r.Replace(`DELETE FROM {{outbox}} WHERE id = ANY($1::uuid[])`),
			countRows:       r.Replace(`SELECT count(*) FROM {{outbox}} WHERE id = ANY($1::uuid[])`),
			heldAggregates:  r.Replace(heldAggregatesSQL),
			loadRows:        r.Replace(loadRowsSQL),
			openDeadLetters: r.Replace(openDeadLettersSQL),
		},
	}
	s.q.init()
	return s, nil
}

// Slot returns the name of the source's replication slot.
func (s *Source) Slot() string { return s.cfg.Slot }

// Publication returns the name of the source's publication.
func (s *Source) Publication() string { return s.cfg.Publication }

func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c == '_'
		digit := i > 0 && c >= '0' && c <= '9'
		if !letter && !digit {
			return false
		}
	}
	return true
}

// Check verifies that the server can stream the outbox's changes: wal_level
// is logical (ErrNotLogical otherwise) and the role has the REPLICATION
// attribute or is a superuser (ErrNoReplication otherwise). The errors say
// what to change.
func (s *Source) Check(ctx context.Context) error {
	var level string
	var replicate bool
	err := s.pool.QueryRow(ctx, `SELECT current_setting('wal_level'),
		(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)`).Scan(&level, &replicate)
	if err != nil {
		return pgstore.Unavailable(fmt.Errorf("pgcdc: check the server: %w", err))
	}
	if level != "logical" {
		return fmt.Errorf("%w (it is %s): run ALTER SYSTEM SET wal_level = logical as a superuser and restart PostgreSQL", ErrNotLogical, level)
	}
	if !replicate {
		return fmt.Errorf("%w: run ALTER ROLE <role> REPLICATION as a superuser, or use a role that has it", ErrNoReplication)
	}
	return nil
}

// Setup runs Check, then creates the publication of the outbox table and
// the replication slot if they do not exist. The outbox's tables must exist
// (migrate first). It is safe to call from several relays at once.
func (s *Source) Setup(ctx context.Context) error {
	if err := s.Check(ctx); err != nil {
		return err
	}
	var schema string
	if err := s.pool.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, s.names.Name).Scan(&schema); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgcdc: the outbox table %s does not exist: migrate first", s.names.Name)
		}
		return pgstore.Unavailable(fmt.Errorf("pgcdc: find the outbox table: %w", err))
	}
	s.table = pgx.Identifier{schema, s.names.Name}.Sanitize()
	create := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert, delete')",
		pgx.Identifier{s.cfg.Publication}.Sanitize(), s.table)
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", s.cfg.Publication).Scan(&exists); err != nil {
		return pgstore.Unavailable(fmt.Errorf("pgcdc: find the publication: %w", err))
	}
	if !exists {
		if _, err := s.pool.Exec(ctx, create); err != nil && !isCode(err, "42710") { // duplicate_object: another relay made it
			return fmt.Errorf("pgcdc: create publication %s: %w", s.cfg.Publication, err)
		}
	}
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", s.cfg.Slot).Scan(&exists); err != nil {
		return pgstore.Unavailable(fmt.Errorf("pgcdc: find the slot: %w", err))
	}
	if !exists {
		_, err := s.pool.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s.cfg.Slot)
		if err != nil && !isCode(err, "42710") {
			return fmt.Errorf("pgcdc: create replication slot %s: %w", s.cfg.Slot, err)
		}
		if err == nil {
			s.cfg.Logger.Info("pgcdc: created the replication slot; drop it with herald relay --mode cdc --drop-slot when the outbox is no longer relayed by CDC",
				"slot", s.cfg.Slot, "publication", s.cfg.Publication)
		}
	}
	return nil
}

// DropSlot drops the source's replication slot and publication, so that
// PostgreSQL keeps no more write-ahead log for it. It fails while a relay
// streams the slot. Events written since the slot's confirmed position and
// deleted in their transaction are then lost to every relay: drop a slot
// only when its outbox is no longer relayed by CDC.
func (s *Source) DropSlot(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Slot)
	if err != nil {
		if isCode(err, "55006") {
			return fmt.Errorf("pgcdc: slot %s is in use by a running relay; stop it first: %w", s.cfg.Slot, err)
		}
		return fmt.Errorf("pgcdc: drop slot %s: %w", s.cfg.Slot, err)
	}
	if _, err := s.pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{s.cfg.Publication}.Sanitize()); err != nil {
		return fmt.Errorf("pgcdc: drop publication %s: %w", s.cfg.Publication, err)
	}
	return nil
}

// Lag is how far the slot is behind the server's write-ahead log.
type Lag struct {
	// Bytes of log the server keeps for the slot: from its confirmed
	// position to the current end of the log.
	Bytes int64
	// Age is how long ago the oldest transaction this source has read but
	// not finished committed; zero when it has none (or does not stream).
	Age time.Duration
	// Active reports whether some relay streams the slot now.
	Active bool
	// Exists is false when the slot has not been created (or was dropped).
	Exists bool
}

// Lag reads the slot's lag from the server and the source's own.
func (s *Source) Lag(ctx context.Context) (Lag, error) {
	var l Lag
	err := s.pool.QueryRow(ctx, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint, active
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&l.Bytes, &l.Active)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, nil
	}
	if err != nil {
		return l, pgstore.Unavailable(fmt.Errorf("pgcdc: slot lag: %w", err))
	}
	l.Exists = true
	s.mu.Lock()
	from := s.q.oldestCommit()
	s.mu.Unlock()
	if !from.IsZero() {
		l.Age = max(time.Since(from), 0)
	}
	return l, nil
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// aggKey names an aggregate.
type aggKey struct{ typ, id string }

// lsn is a position in the write-ahead log.
type lsn = pglogrepl.LSN

// idSet is a set of event ids.
type idSet map[uuid.UUID]struct{}

var _ outbox.Source = (*Source)(nil)
