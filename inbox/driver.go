package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Driver is the storage contract of the inbox, implemented by the packages
// pginbox (PostgreSQL, pgx) and sqliteinbox (SQLite, database/sql) and
// checked by the suite in package inboxtest. Applications hand a Driver to
// New and do not call its transaction methods themselves.
//
// TTx is the driver's transaction type (pgx.Tx, *sql.Tx): the consumer's
// own transaction, in which its handler writes.
type Driver[TTx any] interface {
	Admin

	// Admit records ev's id and takes the verdict on ev, holding a lock on
	// its aggregate's row until tx ends, so that the events of one
	// aggregate are admitted one at a time. For VerdictNext it has already
	// set the aggregate's last applied sequence to ev.Sequence. A second
	// transaction admitting the same id waits until the first ends, and
	// then sees VerdictDuplicate if the first committed.
	Admit(ctx context.Context, tx TTx, ev *Event) (Admission, error)

	// Hold stores ev (its encoded form, body) until its predecessors have
	// been applied. It returns false, storing nothing, when another event
	// of the aggregate already waits with the same sequence.
	Hold(ctx context.Context, tx TTx, ev *Event, body []byte) (bool, error)

	// TakeHeld removes and returns the held event of the aggregate with
	// sequence seq, if there is one.
	TakeHeld(ctx context.Context, tx TTx, aggregateType, aggregateID string, seq int64) (body []byte, ok bool, err error)

	// Advance sets the aggregate's last applied sequence.
	Advance(ctx context.Context, tx TTx, aggregateType, aggregateID string, last int64) error

	// LockAggregate locks the aggregate's row until tx ends and returns its
	// last applied sequence and the lowest sequence held for it (0 when
	// none is). An aggregate never seen is ErrUnknownAggregate.
	LockAggregate(ctx context.Context, tx TTx, aggregateType, aggregateID string) (last, firstHeld int64, err error)

	// WithTx runs fn in a new transaction and commits it when fn returns
	// nil. When fn fails or panics it rolls back, also after ctx is
	// cancelled, and returns fn's error unchanged (or panics again).
	WithTx(ctx context.Context, fn func(tx TTx) error) error
}

// Admin is the operator's side of an inbox: what it holds and its upkeep.
type Admin interface {
	// Gaps lists the aggregates whose oldest held event has waited at
	// least olderThan by the database's clock, oldest first: events that
	// arrived before a predecessor that has not come since.
	Gaps(ctx context.Context, olderThan time.Duration) ([]Gap, error)

	// Prune deletes the ids of events that arrived more than p.OlderThan
	// ago, p.BatchSize per transaction, and returns how many it deleted
	// (also when it fails part way). The per-aggregate sequences and the
	// held events are kept.
	Prune(ctx context.Context, p PruneParams) (int, error)
}

// ErrUnknownAggregate means the inbox has received no event of the
// aggregate.
var ErrUnknownAggregate = errors.New("inbox: unknown aggregate")

// Verdict is a driver's decision on an event being admitted.
type Verdict int

const (
	// VerdictNext: the event is its aggregate's next one (sequence = last
	// applied + 1). Its id is recorded and the aggregate's last applied
	// sequence set to it.
	VerdictNext Verdict = iota + 1
	// VerdictDuplicate: the id was recorded before. Nothing was written.
	VerdictDuplicate
	// VerdictEarly: the event's sequence is beyond last applied + 1. Its
	// id is recorded; the caller holds it.
	VerdictEarly
	// VerdictStale: the sequence was applied already, under another id.
	// The id is recorded, so a redelivery is a duplicate.
	VerdictStale
)

// Admission is a driver's answer to Admit.
type Admission struct {
	Verdict Verdict
	// Last is the aggregate's last applied sequence before the event
	// (undefined for VerdictDuplicate).
	Last int64
	// Successor says that an event with the next sequence is held (for
	// VerdictNext only): the caller drains the held events.
	Successor bool
}

// Gap is an aggregate whose events wait for a predecessor.
type Gap struct {
	AggregateType string
	AggregateID   string
	LastApplied   int64     // the last sequence applied
	FirstHeld     int64     // the lowest sequence waiting: LastApplied+1 … FirstHeld-1 are missing
	Held          int       // how many events wait
	Since         time.Time // when the oldest of them arrived
}

// Missing is how many events the gap lacks before the first held one.
func (g Gap) Missing() int64 { return g.FirstHeld - g.LastApplied - 1 }

// PruneParams select what Prune deletes.
type PruneParams struct {
	// OlderThan is the least age of an id record for it to be deleted.
	// After that a redelivery of the event is still caught, by its
	// sequence, and reported as Repeated rather than Duplicate.
	OlderThan time.Duration
	// BatchSize is the most rows deleted per transaction; 0 means
	// DefaultPruneBatch.
	BatchSize int
}

// DefaultPruneBatch is PruneParams.BatchSize when it is zero.
const DefaultPruneBatch = 1000

// Validate refuses a negative OlderThan or BatchSize and fills in the
// default batch size.
func (p *PruneParams) Validate() error {
	if p.OlderThan < 0 {
		return fmt.Errorf("inbox: prune: older than %v is negative", p.OlderThan)
	}
	if p.BatchSize < 0 {
		return fmt.Errorf("inbox: prune: batch size %d is negative", p.BatchSize)
	}
	if p.BatchSize == 0 {
		p.BatchSize = DefaultPruneBatch
	}
	return nil
}

// PruneBatches runs deleteBatch, which deletes up to limit rows and says
// how many, until a batch deletes fewer than limit rows or fails: the loop
// the drivers' Prune share.
func PruneBatches(ctx context.Context, limit int, deleteBatch func(ctx context.Context, limit int) (int, error)) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := deleteBatch(ctx, limit)
		total += n
		if err != nil || n < limit {
			return total, err
		}
	}
}

// BatchDriver is a Driver that admits a whole batch of events in a few
// statements (HandleBatch); pginbox implements it. HandleBatch takes the
// events of a batch through Driver.Admit one by one on a driver that does
// not.
type BatchDriver[TTx any] interface {
	Driver[TTx]

	// AdmitBatch records the ids (distinct), creates the aggregates'
	// rows that do not exist yet (last applied sequence 0), locks every
	// aggregate's row until tx ends, and returns what the batch needs to
	// know, the state of each aggregate read once its lock is held. It
	// takes its locks in a fixed order (the ids' first, then the
	// aggregates', each sorted), so that concurrent batches cannot
	// deadlock on them. Where an aggregate is at its guess's Expect, the
	// driver may advance it to Upto at once (AggregateState.Advanced).
	AdmitBatch(ctx context.Context, tx TTx, ids []string, aggregates []BatchAggregate) (BatchAdmission, error)

	// SettleBatch writes what a batch decided, in tx: each aggregate's new
	// last applied sequence, the events to hold, and it removes the held
	// events to release and returns their bodies, in the order of s.Take.
	SettleBatch(ctx context.Context, tx TTx, s Settlement) (taken [][]byte, err error)
}

// AggregateKey names an aggregate: its type and id (the event's subject).
type AggregateKey struct {
	Type string
	ID   string
}

// BatchAggregate is an aggregate of a batch and the batch's guess of its
// position: the common case, a batch holding the aggregate's next events
// Expect+1 … Upto. If the aggregate's last applied sequence is Expect
// under its lock, the batch will set it to Upto unless some of those
// events are duplicates or held events follow Upto; a driver may write
// Upto at once, with the lock, and save the batch a statement. Expect -1
// makes no guess.
type BatchAggregate struct {
	AggregateKey
	Expect, Upto int64
}

// BatchAdmission is a BatchDriver's answer to AdmitBatch.
type BatchAdmission struct {
	// Seen[i] says that ids[i] was recorded before the batch: a duplicate.
	Seen []bool
	// Aggregates[j] is the state of aggregates[j], read under its lock.
	Aggregates []AggregateState
}

// AggregateState is an aggregate's position and what waits for it.
type AggregateState struct {
	Last int64   // the last applied sequence (0 for a new aggregate)
	Held []int64 // the sequences held for it, in any order
	// Advanced says that AdmitBatch has set the last applied sequence to
	// the guess's Upto (Last is the sequence before).
	Advanced bool
}

// Settlement is what a batch writes once it has decided on every event.
type Settlement struct {
	Advance []Position  // aggregates whose last applied sequence is to be set
	Hold    []HeldEvent // events to hold
	Take    []Position  // held events to release: removed, their bodies returned
}

// Position is an aggregate and a sequence of it.
type Position struct {
	Aggregate AggregateKey
	Sequence  int64
}

// HeldEvent is an event to hold and its encoded form.
type HeldEvent struct {
	Event *Event
	Body  []byte
}
