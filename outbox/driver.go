package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Driver is the storage contract the engine runs on, implemented by the
// pgstore and sqlitestore packages and checked by the suite in package
// storetest. Applications hand a Driver to NewClient (to enqueue) and to
// NewRelay (as its Source), and give its Admin side to operator tools; they
// do not call InsertTx themselves.
//
// TTx is the driver's transaction type (pgx.Tx, *sql.Tx): the caller's own
// transaction goes straight to InsertTx, with no wrapping or type switch.
type Driver[TTx any] interface {
	Store

	// InsertTx writes events in tx. An event without a Sequence takes the
	// next one of its aggregate from a counter row that stays locked until
	// tx ends, so writers of one aggregate commit in sequence order and a
	// rollback leaves no gap. It returns ErrDuplicate when an id, an
	// idempotency key or a caller's sequence is already stored.
	InsertTx(ctx context.Context, tx TTx, events []Event) ([]Enqueued, error)

	// WithTx runs fn in a new transaction and commits it when fn returns
	// nil, and the relays listening through this driver are woken (pgstore
	// calls Notify after the commit; sqlitestore's InsertTx wakes them, and
	// their claim waits for the commit's write lock). When fn fails or panics
	// it rolls back, also after ctx is cancelled, and returns fn's error
	// unchanged (or panics again).
	WithTx(ctx context.Context, fn func(tx TTx) error) error

	// Notify tells the relays that events were committed: those listening
	// through this driver at once, others as the driver can. It never
	// blocks. A Notify that is never sent costs latency only: relays poll.
	Notify()
}

// Store is both sides of a driver without its transaction type: what a
// process that relays and operates one outbox holds.
type Store interface {
	Source
	Admin
}

// Source is what a Relay needs from storage: claiming batches of events
// and hearing that new ones were committed.
type Source interface {
	// Claim takes up to p.Limit events that are due and are the oldest
	// unpublished event of their aggregate (its head), so no two batches
	// ever hold events of one aggregate. With p.RunLength above 1 it may
	// also take, after a head, the events that follow it in its aggregate
	// (a run), in sequence order and stopping at the first one that is not
	// due or is parked. Events claimed by another Batch are invisible until
	// that batch ends. An empty batch is not an error.
	// The batch outlives ctx: it can still be finished after ctx ends, which
	// a graceful stop relies on.
	Claim(ctx context.Context, p ClaimParams) (Batch, error)

	// Listen blocks until ctx is done, calling wake whenever events may have
	// been committed. It returns early with an error if it loses its
	// connection; the relay then polls and calls Listen again.
	Listen(ctx context.Context, wake func()) error
}

// Admin is the operator's side of an outbox: the backlog's figures and the
// dead-letter queue. HTTP and command-line front ends depend on it alone.
type Admin interface {
	// ListDeadLetters lists the dead letters matching f, ordered by id. A
	// filter that f.Validate refuses is an error wrapping ErrInvalidFilter
	// (a *FilterError), before the database is touched.
	ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error)
	// GetDeadLetter returns ErrNotFound for an unknown id.
	GetDeadLetter(ctx context.Context, id int64) (DeadLetter, error)
	// ReplayDeadLetter puts the event back in the outbox with its original
	// id and sequence and marks the dead letter replayed, in one
	// transaction, so a replay happens exactly once. Returns ErrNotFound or
	// ErrAlreadyResolved.
	ReplayDeadLetter(ctx context.Context, id int64) error
	// ReplayDeadLetters replays every open dead letter matching f, oldest
	// first, and returns how many it replayed. Only open dead letters can be
	// replayed: f.State "", DeadLetterAll and DeadLetterOpen select the open
	// ones, DeadLetterReplayed and DeadLetterDiscarded match nothing. A
	// filter that f.Validate refuses is refused as by ListDeadLetters.
	ReplayDeadLetters(ctx context.Context, f DeadLetterFilter) (int, error)
	// DiscardDeadLetter resolves a dead letter without publishing it; the row
	// stays as an audit record, with reason. The aggregate's parked events
	// flow again. Returns ErrNotFound or ErrAlreadyResolved.
	DiscardDeadLetter(ctx context.Context, id int64, reason string) error
	// PruneDeadLetters deletes the dead letters that p selects: resolved
	// (replayed or discarded) more than p.OlderThan ago by the database's
	// clock, and with p.IncludeOpen also open ones moved to the queue more
	// than p.OlderThan ago. It deletes them p.BatchSize rows per transaction,
	// so that a large prune never holds many locks for long, and returns how
	// many it deleted (also when it fails part way). A negative OlderThan is
	// an error wrapping ErrInvalidFilter.
	PruneDeadLetters(ctx context.Context, p PruneParams) (int, error)

	// Stats describes the backlog and the dead-letter queue.
	Stats(ctx context.Context) (Stats, error)
}

// PruneParams select what PruneDeadLetters deletes.
type PruneParams struct {
	// OlderThan is the least age of a dead letter's resolution (or, for an
	// open one, of its move to the queue) for it to be deleted.
	OlderThan time.Duration
	// IncludeOpen deletes open dead letters too: their events are lost.
	IncludeOpen bool
	// BatchSize is the most rows deleted per transaction; 0 means
	// DefaultPruneBatch.
	BatchSize int
}

// DefaultPruneBatch is PruneParams.BatchSize when it is zero.
const DefaultPruneBatch = 1000

// Validate refuses a negative OlderThan or BatchSize, with an error wrapping
// ErrInvalidFilter.
func (p PruneParams) Validate() error {
	if p.OlderThan < 0 {
		return fmt.Errorf("%w: older than %v is negative", ErrInvalidFilter, p.OlderThan)
	}
	if p.BatchSize < 0 {
		return fmt.Errorf("%w: batch size %d is negative", ErrInvalidFilter, p.BatchSize)
	}
	return nil
}

// ClaimParams select what Claim takes.
type ClaimParams struct {
	Limit int // at least 1; the relay passes its BatchSize
	// MoveOnPastDeadLetters lets an aggregate's later events flow while one
	// of its events sits in the dead-letter queue. By default they stay
	// parked until the dead letter is replayed or discarded.
	MoveOnPastDeadLetters bool
	// RunLength is the most events of one aggregate the batch may hold:
	// its head and the events after it. 0 and 1 mean heads only. The relay
	// asks for runs unless the source claims serially (SerialClaims); a
	// driver may always return fewer.
	RunLength int
	// Follow lets the claim continue runs that a batch still in flight
	// holds: for each tail, the events after it in its aggregate, in
	// sequence order, up to the first that is not due or is parked, within
	// Limit. The caller holds the tails' batch itself (so no other claim
	// can take the aggregate), publishes what follows only once that batch
	// has published the aggregate's events, and gives it back otherwise.
	// This lets one hot aggregate's next batch be claimed while the current
	// one publishes. A driver may ignore Follow; the relay passes it only
	// to a source that does not claim serially.
	Follow []Tail
}

// Tail is the last event a batch in flight holds of an aggregate.
type Tail struct {
	AggregateType, AggregateID string
	Sequence                   int64
}

// Batch is a set of claimed events. Exactly one of Finish or Release must be
// called. If the process dies first, the claim lapses and the events are
// claimed again later (so they may be published twice, with the same id).
type Batch interface {
	Records() []Record
	// Finish applies outcomes[i] to Records()[i] atomically: published events
	// are deleted, failed ones scheduled again, exhausted ones moved to the
	// dead-letter queue, released ones left as they were.
	Finish(ctx context.Context, outcomes []Outcome) error
	// Release gives the events back untouched.
	Release(ctx context.Context) error
}

// OutcomeKind is what became of one claimed event.
type OutcomeKind int

const (
	OutcomePublished  OutcomeKind = iota + 1 // the broker acknowledged it
	OutcomeRetry                             // try again after Outcome.Delay
	OutcomeDeadLetter                        // move it to the dead-letter queue
	// OutcomeReleased gives the event back as it was, no attempt charged:
	// it was not sent because an earlier event of its run failed.
	OutcomeReleased
)

// Outcome is the relay's verdict on one claimed event.
type Outcome struct {
	Kind  OutcomeKind
	Error string        // for OutcomeRetry and OutcomeDeadLetter
	Delay time.Duration // for OutcomeRetry: measured from the database's clock
}

// DeadLetterState filters dead letters by what an operator did with them.
type DeadLetterState string

const (
	DeadLetterOpen      DeadLetterState = "open"      // waiting for an operator
	DeadLetterReplayed  DeadLetterState = "replayed"  // back in the outbox
	DeadLetterDiscarded DeadLetterState = "discarded" // resolved without publishing
	// DeadLetterAll matches every state, as "" does; it is a filter's
	// value only, never a dead letter's State.
	DeadLetterAll DeadLetterState = "all"
)

// DeadLetter is an event that exhausted its attempts or failed permanently.
type DeadLetter struct {
	ID             int64
	EventID        uuid.UUID
	AggregateType  string
	AggregateID    string
	EventType      string
	Payload        json.RawMessage
	Headers        map[string]string
	Sequence       int64
	IdempotencyKey string
	Error          string
	Attempts       int
	CreatedAt      time.Time // when the event was first enqueued
	FirstFailedAt  time.Time
	MovedAt        time.Time
	Reprocessed    bool
	ReprocessedAt  *time.Time
	DiscardedAt    *time.Time
	DiscardReason  string
}

// State derives the dead letter's state from its timestamps.
func (d DeadLetter) State() DeadLetterState {
	switch {
	case d.Reprocessed:
		return DeadLetterReplayed
	case d.DiscardedAt != nil:
		return DeadLetterDiscarded
	default:
		return DeadLetterOpen
	}
}

// DeadLetterFilter narrows ListDeadLetters and ReplayDeadLetters. Zero
// fields match everything; results are ordered by id. Validate says which
// filters are refused.
type DeadLetterFilter struct {
	State         DeadLetterState // "" (or DeadLetterAll) matches all states
	AggregateType string
	AggregateID   string
	EventType     string
	// ErrorContains, when set, matches the dead letters whose error holds
	// it, case-sensitively: an operator's search by error text.
	ErrorContains string
	AfterID       int64 // cursor: only ids greater than this
	Limit         int   // 0 means 100 for List and no limit for Replay
}

// Stats describes the outbox backlog.
type Stats struct {
	Pending       int64     // events waiting in the outbox
	Retrying      int64     // of those, events that failed at least once
	OldestPending time.Time // created time of the oldest pending event; zero when none
	DeadLetters   int64     // open dead letters
	// Parked counts the pending events waiting behind a dead letter: those
	// of aggregates with an open dead letter of a lower sequence. They flow
	// again once it is replayed or discarded.
	Parked int64
}
