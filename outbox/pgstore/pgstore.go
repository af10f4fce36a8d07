// Package pgstore is the PostgreSQL driver of the outbox engine: an
// outbox.Driver[pgx.Tx] on a pgxpool.Pool.
//
//	driver, err := pgstore.New(pool, pgstore.Config{Name: "payments"})
//	if err != nil { ... }
//	if err := driver.Migrate(ctx); err != nil { ... }
//	client := outbox.NewClient[pgx.Tx](driver)
//
// An outbox has a name (Config.Name, default outbox.DefaultName), and every
// object it owns derives from it (outbox.NamesOf): the outbox "payments"
// keeps its pending events in the table payments, its dead letters in
// payments_dlq, its per-aggregate counters in payments_sequences, records
// its schema version in payments_migrations and wakes its relays on the
// channel payments. Its indexes and constraints are prefixed with the name
// too, so several outboxes share one schema without seeing each other's
// events or wake-ups.
//
// Events live in the outbox table until the relay publishes them. Claim
// deletes a batch of head events inside a transaction that stays open while
// the relay publishes; Finish re-inserts the failed ones (or moves them to
// the dead-letter table) and commits, Release rolls back. A relay that dies
// mid-batch loses its connection, PostgreSQL rolls the claim back and the
// events reappear; a relay that hangs loses its claim after
// Config.ClaimTimeout (idle_in_transaction_session_timeout).
//
// The wake-up is sent after the commit: InsertTx sends nothing, and whoever
// commits the writing transaction calls Driver.Notify (WithTx, and so
// Client.Enqueue, do it themselves). Config.NotifyInTx sends it inside the
// writing transaction instead, at a cost.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/migration"
)

// DefaultClaimTimeout ends a hung relay's claim. It is above twice the
// relay's default publish timeout (the longest a healthy relay holds a
// claim) and below JetStream's default two-minute duplicate window, so
// events republished after a hang are still dropped as duplicates (G5).
const DefaultClaimTimeout = 90 * time.Second

// Limits of ListDeadLetters.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// DefaultClaimLimit is the batch size Claim uses when ClaimParams.Limit is not positive.
const DefaultClaimLimit = 100

// Config tunes a Driver. The zero value is usable.
type Config struct {
	// Name names the outbox, and through outbox.NamesOf its tables, indexes,
	// constraints, version table and LISTEN/NOTIFY channel; default
	// outbox.DefaultName. Drivers of one name share one outbox; drivers of
	// different names in one schema share nothing.
	Name string
	// DisableNotify stops InsertTx and Notify from sending pg_notify and
	// makes Listen wait for ctx without listening (for connection poolers
	// that break LISTEN); relays then find events by polling, except that
	// Notify still wakes those listening through this Driver in-process.
	DisableNotify bool
	// NotifyInTx sends the wake-up inside the writing transaction, as a
	// pg_notify that InsertTx queues with the events, for callers that
	// commit their own transactions and cannot call Driver.Notify after
	// the commit. It is costly: PostgreSQL serialises the commits of
	// transactions that notify, and with 8 concurrent writers it nearly
	// doubles the cost of an enqueuing transaction (docs/BENCHMARKS.md).
	// By default the writing transaction sends nothing, and Notify, called
	// after the commit (WithTx and so Client.Enqueue do it themselves),
	// sends the wake-up from a connection of its own; a Notify the caller
	// forgets costs only latency, as the relay's fallback poll still finds
	// the events.
	NotifyInTx bool
	// ClaimTimeout bounds how long a claim transaction may sit idle (the
	// relay publishing); after it the server ends the session and the events
	// are claimable again. Default DefaultClaimTimeout. It must exceed the
	// longest a relay holds a batch (outbox.Relay: twice its PublishTimeout).
	ClaimTimeout time.Duration
	// DeleteInTx deletes each event's row in the writing transaction,
	// right after inserting it: the insert still reaches the write-ahead
	// log, which is where the change-data-capture relay (package pgcdc)
	// reads events, so the table never grows. Only for outboxes relayed by
	// pgcdc: a polling relay never sees such an event. It also gives up the
	// outbox's own uniqueness checks of idempotency keys and caller-given
	// sequences, which hold only while a row is in the table.
	DeleteInTx bool
	// WALMessages writes each event to the write-ahead log only, as a
	// transactional logical decoding message (pg_logical_emit_message),
	// and not as a row: the cheapest write for an outbox relayed by pgcdc,
	// which reads the messages in commit order. Nothing reaches the table,
	// so a polling relay never sees such an event, and, as with
	// DeleteInTx, the outbox's uniqueness checks of idempotency keys and
	// caller-given sequences do not apply. The aggregates' counters are
	// kept as usual. Set at most one of DeleteInTx and WALMessages.
	WALMessages bool
	// SpreadStart begins the driver's first claim at a random event's
	// aggregate instead of the first aggregate in key order. Relays in
	// several processes on one outbox then walk different aggregates
	// instead of all starting at the same place and stepping over each
	// other's held heads. herald relay and serve set it; leave it off where
	// a test expects the first claim to take the first aggregates.
	SpreadStart bool
}

// Driver is the PostgreSQL outbox driver. It is safe for concurrent use.
type Driver struct {
	pool  *pgxpool.Pool
	cfg   Config
	names outbox.Names
	sql   queries
	// migrations is the migration set with the outbox's names.
	migrations migration.Set

	cursorMu sync.Mutex
	cursor   aggregateKey // where the next claim's walk starts (exclusive)
	spread   bool         // the cursor is still to be set at random (Config.SpreadStart)

	notifyMu      sync.Mutex
	notifying     bool // a goroutine is sending notifications
	notifyPending bool // a commit happened after its last one was sent

	localMu sync.Mutex                // serialises changes to local
	local   atomic.Pointer[[]*func()] // the wake functions of this process's Listen calls, copied on change
}

var _ outbox.Driver[pgx.Tx] = (*Driver)(nil)

// queries are the driver's statements with its outbox's names, rendered
// once in New: no statement is built per call on the hot paths.
type queries struct {
	insert, insertNumbered   string
	message, messageNumbered string // Config.WALMessages
	deleteInTx               string
	claims                   [2][2]string // [parking][wrap]
	runs                     [2]string    // [parking]
	claimBegin               string
	randomAggregate          string
	retry, deadLetter        string
	release                  string
	listen                   string
	dlqSelect                string // SELECT dlqColumns FROM the dead letters, without a condition
	getDeadLetter            string
	replay                   string // replaySQL, its %s left for the condition
	replayOne                string
	replaySelect             string // SELECT id FROM the dead letters, without a condition
	discard                  string
	stats                    string
	prune                    string
}

// New returns a driver of the outbox cfg.Name on pool. Call Migrate before
// first use. It fails on a name outbox.NamesOf refuses, and when both
// DeleteInTx and WALMessages are set.
func New(pool *pgxpool.Pool, cfg Config) (*Driver, error) {
	names, err := outbox.NamesOf(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if cfg.DeleteInTx && cfg.WALMessages {
		return nil, errors.New("pgstore: DeleteInTx and WALMessages exclude each other: an event is written as a row (deleted or not) or as a message")
	}
	cfg.Name = names.Name
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = DefaultClaimTimeout
	}
	ms := max(cfg.ClaimTimeout.Milliseconds(), 1)
	r := nameReplacer(names)
	render := func(s string) string { return r.Replace(s) }
	replay := render(replaySQL)
	return &Driver{
		spread:     cfg.SpreadStart,
		pool:       pool,
		cfg:        cfg,
		names:      names,
		migrations: migrationSetOf(names, r),
		sql: queries{
			insert:          render(insertSQL),
			insertNumbered:  render(insertNumberedSQL),
			message:         render(messageSQL + fmt.Sprintf(emitSQL, "seq.last_sequence")),
			messageNumbered: render(messageNumberedSQL + fmt.Sprintf(emitSQL, "$8::bigint")),
			deleteInTx:      render(deleteInTxSQL),
			claims: [2][2]string{
				{render(fmt.Sprintf(claimSQL, "", "")), render(fmt.Sprintf(claimSQL, "", wrapBoundSQL))},
				{render(fmt.Sprintf(claimSQL, parkedSQL, "")), render(fmt.Sprintf(claimSQL, parkedSQL, wrapBoundSQL))},
			},
			runs: [2]string{render(fmt.Sprintf(runSQL, "")), render(fmt.Sprintf(runSQL, parkedSQL))},
			// SET LOCAL takes no parameters; the value is an integer we format.
			claimBegin:      "BEGIN; SET LOCAL idle_in_transaction_session_timeout = " + strconv.FormatInt(ms, 10),
			randomAggregate: render(randomAggregateSQL),
			retry:           render(retrySQL),
			release:         render(releaseSQL),
			deadLetter:      render(deadLetterSQL),
			listen:          "LISTEN " + pgx.Identifier{names.Channel}.Sanitize(),
			dlqSelect:       render("SELECT " + dlqColumns + " FROM {{dlq}} WHERE "),
			getDeadLetter:   render("SELECT " + dlqColumns + " FROM {{dlq}} WHERE id = $1"),
			replay:          replay,
			replayOne:       fmt.Sprintf(replay, "id = $1"),
			replaySelect:    render("SELECT id FROM {{dlq}} WHERE "),
			discard:         render(discardSQL),
			stats:           render(statsSQL),
			prune:           render(pruneSQL),
		},
	}, nil
}

// nameReplacer renders the placeholders of the driver's statements and
// migrations with an outbox's names: {{outbox}} is the table of pending
// events, {{dlq}} the dead letters' and {{sequences}} the counters'.
// Indexes and constraints are named after their table ({{outbox}}_pos_idx),
// so they carry the outbox's name too.
func nameReplacer(n outbox.Names) *strings.Replacer {
	return strings.NewReplacer("{{outbox}}", n.Name, "{{dlq}}", n.DeadLetters, "{{sequences}}", n.Sequences)
}

// Names returns the database objects of the driver's outbox.
func (d *Driver) Names() outbox.Names { return d.names }

// Pool returns the pool the driver runs on.
func (d *Driver) Pool() *pgxpool.Pool { return d.pool }

// WithTx runs fn in a new transaction and commits it when fn returns nil,
// then calls Notify (unless Config.NotifyInTx, when the transaction
// notified by itself). When fn fails or panics, WithTx rolls the
// transaction back, even after ctx is cancelled, so the connection goes
// back to the pool clean; then it returns fn's error unchanged, or panics
// again.
//
// A lost connection is marked (see IsConnectionError): before the commit,
// with outbox.ErrUnavailable, fn's error staying in the chain (nothing was
// written); during the commit, with outbox.ErrOutcomeUnknown. A BEGIN that
// fails on a lost connection is tried once more on a live one (fn has not
// run yet); fn itself is never run twice.
func (d *Driver) WithTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, release, err := d.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	done := false
	defer func() {
		if !done { // fn panicked: roll back while the panic goes on
			rollback(ctx, tx)
		}
	}()
	err = fn(tx)
	done = true
	if err != nil {
		rollback(ctx, tx)
		return Unavailable(err)
	}
	// A failed commit leaves no transaction open: pgx closes a connection
	// that is still in one.
	if err := tx.Commit(ctx); err != nil {
		return commitError(err)
	}
	if !d.cfg.NotifyInTx {
		d.Notify()
	}
	return nil
}

// rollbackTimeout bounds a rollback that runs after its context ended.
const rollbackTimeout = 10 * time.Second

// rollback rolls tx back, also when ctx has ended. Its error is dropped:
// pgx closes a connection whose rollback failed, so none is left in a
// transaction.
func rollback(ctx context.Context, tx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = tx.Rollback(rctx)
}

// rollbackAfter rolls tx back after err and returns err, joined with a
// failure to roll back. The rollback runs even when ctx has ended (a relay
// stopping), so the connection goes back to the pool clean.
func rollbackAfter(ctx context.Context, tx pgx.Tx, err error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if rerr := tx.Rollback(rctx); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
		return errors.Join(err, fmt.Errorf("pgstore: rollback: %w", rerr))
	}
	return err
}

// encodeHeaders renders headers as a JSON object ({} for none).
func encodeHeaders(h map[string]string) (string, error) {
	if len(h) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(h)
	return string(b), err
}

func nullText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// storableText makes an error message storable in a text column, which
// refuses NUL and invalid UTF-8 (a message cut mid-character, a broker's
// binary reply). Refusing it would fail Finish, and the batch would be
// published again and again.
func storableText(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// insertError converts a failed insert to the outbox's sentinels: unique
// violations to ErrDuplicate, values PostgreSQL cannot store (a NUL
// character, invalid UTF-8, a check constraint) to ErrInvalidEvent, a lost
// connection to ErrUnavailable.
func insertError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%w (%w)", outbox.ErrDuplicate, err)
		case "23514", // check_violation
			"23502", // not_null_violation
			"22021", // character_not_in_repertoire
			"22P02", // invalid_text_representation
			"22P05", // untranslatable_character
			"22001": // string_data_right_truncation
			return fmt.Errorf("%w (%w)", outbox.ErrInvalidEvent, err)
		}
	}
	return Unavailable(fmt.Errorf("pgstore: insert: %w", err))
}

// resolveError converts a failed replay: an idempotency key taken since the
// event was dead-lettered is a duplicate.
func resolveError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w (%w)", outbox.ErrDuplicate, err)
	}
	return err
}
