package pgcdc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/heraldhq/herald/outbox"
)

// entry is one event read from the log (or back from the table).
type entry struct {
	rec  outbox.Record
	kept bool   // its row is in the outbox table: delete it once finished
	tx   *txn   // the transaction that wrote it; nil for a row read back from the table
	gen  uint64 // the stream session that read it
}

// txn is a transaction read from the log whose events are not all
// finished. The slot's position may move to after, the end of the
// transaction before it, but not past it.
type txn struct {
	end, after lsn
	commit     time.Time
	remaining  int
	prev, next *txn
}

// aggState is an aggregate with events read and not finished.
type aggState struct {
	key   aggKey
	queue []*entry // waiting, in sequence order
	busy  bool     // events in a batch (or being parked)
	due   time.Time
	// queued: in ready or delayed.
	queued bool
	// held: parked behind an open dead letter. Its events go to the table
	// until the check finds the dead letter resolved.
	held bool
}

// queue is the source's state; the Source's mu guards it.
type queue struct {
	gen      uint64
	started  bool // a stream session has started in this process
	aggs     map[aggKey]*aggState
	ready    []*aggState
	delayed  []*aggState
	buffered int
	head     *txn // unfinished transactions, oldest first
	tail     *txn
	lastEnd  lsn // the end of the last transaction read, or the keepalive's position
	// loaded are ids of rows read back from the table, each with the log
	// position before which its insert may still come from the stream
	// (and is then dropped).
	loaded map[uuid.UUID]lsn
}

func (q *queue) init() {
	q.aggs = make(map[aggKey]*aggState)
	q.loaded = make(map[uuid.UUID]lsn)
}

func (q *queue) agg(k aggKey) *aggState {
	a := q.aggs[k]
	if a == nil {
		a = &aggState{key: k}
		q.aggs[k] = a
	}
	return a
}

// schedule makes a claimable when it has waiting events.
func (q *queue) schedule(a *aggState, now time.Time) {
	if a.busy || a.queued || len(a.queue) == 0 {
		if !a.busy && !a.queued && len(a.queue) == 0 && !a.held {
			delete(q.aggs, a.key)
		}
		return
	}
	a.queued = true
	if a.due.After(now) {
		q.delayed = append(q.delayed, a)
	} else {
		q.ready = append(q.ready, a)
	}
}

// promote moves the delayed aggregates that are due to ready.
func (q *queue) promote(now time.Time) {
	q.delayed = slices.DeleteFunc(q.delayed, func(a *aggState) bool {
		if a.due.After(now) {
			return false
		}
		q.ready = append(q.ready, a)
		return true
	})
}

// link appends t to the unfinished transactions.
func (q *queue) link(t *txn) {
	t.prev = q.tail
	if q.tail != nil {
		q.tail.next = t
	} else {
		q.head = t
	}
	q.tail = t
}

func (q *queue) unlink(t *txn) {
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		q.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		q.tail = t.prev
	}
	t.prev, t.next = nil, nil
}

// done records that e is finished: acknowledged, dead-lettered or parked.
func (q *queue) done(e *entry) {
	q.buffered--
	if e.tx == nil || e.gen != q.gen {
		return
	}
	e.tx.remaining--
	if e.tx.remaining == 0 {
		q.unlink(e.tx)
	}
}

// drop forgets e, which the stream will read again (a session ended).
func (q *queue) drop(*entry) { q.buffered-- }

// current reports whether e belongs to the running session, or is a row
// read back from the table (never read again from the stream).
func (q *queue) current(e *entry) bool { return e.tx == nil || e.gen == q.gen }

// confirmable is the log position the slot may be confirmed at.
func (q *queue) confirmable() lsn {
	if q.head != nil {
		return q.head.after
	}
	return q.lastEnd
}

func (q *queue) oldestCommit() time.Time {
	if q.head == nil {
		return time.Time{}
	}
	return q.head.commit
}

// reset starts a new stream session at position start: events read by the
// last session and not yet claimed are dropped (the stream sends them
// again); batches in flight finish as usual but move the slot no more.
func (q *queue) reset(start lsn) {
	q.gen++
	for _, a := range q.aggs {
		a.queue = slices.DeleteFunc(a.queue, func(e *entry) bool {
			if e.tx != nil {
				q.drop(e)
				return true
			}
			return false
		})
	}
	q.head, q.tail = nil, nil
	q.lastEnd = start
}

// Claim hands out up to p.Limit events: for each aggregate in turn that has
// events waiting and none in flight, its next event, or with p.RunLength
// above 1 a run of its next events. Events of a parked aggregate are
// written to the table instead.
func (s *Source) Claim(ctx context.Context, p outbox.ClaimParams) (outbox.Batch, error) {
	limit := max(p.Limit, 1)
	run := max(p.RunLength, 1)
	now := time.Now()
	s.mu.Lock()
	q := &s.q
	q.promote(now)
	var (
		picked []*entry
		park   []*aggState
	)
	for len(picked) < limit && len(q.ready) > 0 {
		a := q.ready[0]
		q.ready[0] = nil
		q.ready = q.ready[1:]
		a.queued = false
		if a.busy || len(a.queue) == 0 {
			q.schedule(a, now)
			continue
		}
		a.busy = true
		if a.held {
			park = append(park, a)
			continue
		}
		n := min(len(a.queue), run, limit-len(picked))
		picked = append(picked, a.queue[:n]...)
		a.queue = slices.Clone(a.queue[n:])
	}
	if len(q.ready) == 0 {
		q.ready = nil // let the backing array go
	}
	s.mu.Unlock()
	if len(park) > 0 {
		s.park(ctx, park)
	}
	b := &batch{s: s, entries: picked, records: make([]outbox.Record, len(picked))}
	for i, e := range picked {
		b.records[i] = e.rec
	}
	return b, nil
}

// batch is a set of claimed events.
type batch struct {
	s       *Source
	entries []*entry
	records []outbox.Record
	ended   bool
}

func (b *batch) Records() []outbox.Record { return b.records }

// Release gives the events back to the front of their aggregates.
func (b *batch) Release(context.Context) error {
	if b.ended {
		return nil
	}
	b.ended = true
	outcomes := make([]outbox.Outcome, len(b.entries))
	for i := range outcomes {
		outcomes[i] = outbox.Outcome{Kind: outbox.OutcomeReleased}
	}
	b.s.finish(b.entries, outcomes)
	return nil
}

// Finish deletes the rows of acknowledged events that are still in the
// table and dead-letters the exhausted ones, in one transaction, and only
// then lets the slot move past them; retried and released events go back
// to the front of their aggregates.
func (b *batch) Finish(ctx context.Context, outcomes []outbox.Outcome) error {
	if len(outcomes) != len(b.entries) {
		return errors.Join(fmt.Errorf("pgcdc: finish: %d outcomes for %d records", len(outcomes), len(b.entries)), b.Release(ctx))
	}
	if b.ended {
		if len(b.entries) > 0 {
			return errors.New("pgcdc: finish: batch already ended")
		}
		return nil
	}
	var (
		del      []uuid.UUID
		dead     []outbox.Record
		deadOuts []outbox.Outcome
	)
	for i, o := range outcomes {
		e := b.entries[i]
		switch o.Kind {
		case outbox.OutcomePublished:
			if e.kept {
				del = append(del, e.rec.ID)
			}
		case outbox.OutcomeDeadLetter:
			dead = append(dead, e.rec)
			deadOuts = append(deadOuts, o)
		case outbox.OutcomeRetry, outbox.OutcomeReleased:
		default:
			return errors.Join(fmt.Errorf("pgcdc: finish: record %d: unknown outcome kind %d", i, o.Kind), b.Release(ctx))
		}
	}
	var err error
	if len(dead) > 0 {
		// The dead letter's row must leave the table with it (never in
		// both): wait until the writer's commit is visible.
		err = b.s.awaitVisible(ctx, b.entries, outcomes, outbox.OutcomeDeadLetter)
		if err == nil {
			err = pgx.BeginFunc(ctx, b.s.pool, func(tx pgx.Tx) error {
				return b.s.d.DeadLetterTx(ctx, tx, dead, deadOuts)
			})
		}
	}
	if err == nil && len(del) > 0 {
		err = b.s.deleteKept(ctx, b.entries, outcomes)
	}
	if err != nil {
		return fmt.Errorf("pgcdc: finish: %w", err)
	}
	b.ended = true
	b.s.finish(b.entries, outcomes)
	return nil
}

// finish applies outcomes to entries in memory.
func (s *Source) finish(entries []*entry, outcomes []outbox.Outcome) {
	now := time.Now()
	s.mu.Lock()
	q := &s.q
	var touched []*aggState
	back := make(map[*aggState][]*entry)
	for i, e := range entries {
		o := outcomes[i]
		a := q.agg(aggKey{e.rec.AggregateType, e.rec.AggregateID})
		if a.busy {
			a.busy = false
			touched = append(touched, a)
		}
		switch o.Kind {
		case outbox.OutcomePublished:
			q.done(e)
		case outbox.OutcomeDeadLetter:
			q.done(e)
			if !s.cfg.MoveOnPastDeadLetters {
				a.held = true
			}
		case outbox.OutcomeRetry:
			e.rec.Attempts++
			e.rec.LastError = o.Error
			if e.rec.FirstFailedAt.IsZero() {
				e.rec.FirstFailedAt = now
			}
			a.due = now.Add(o.Delay)
			back[a] = append(back[a], e)
		default:
			back[a] = append(back[a], e)
		}
	}
	for _, a := range touched {
		if es := back[a]; len(es) > 0 {
			es = slices.DeleteFunc(es, func(e *entry) bool {
				if !q.current(e) {
					q.drop(e)
					return true
				}
				return false
			})
			a.queue = append(es, a.queue...)
		}
		q.schedule(a, now)
	}
	st := s.status
	s.mu.Unlock()
	s.signalSpace()
	if st != nil {
		st.nudge(false)
	}
}

func (s *Source) signalSpace() {
	select {
	case s.space <- struct{}{}:
	default:
	}
}

// entryOrder sorts one aggregate's entries by sequence.
func entryOrder(a, b *entry) int { return cmp.Compare(a.rec.Sequence, b.rec.Sequence) }

// visibleWithin bounds the wait for a writer's commit to become visible
// to other sessions. The stream can deliver a transaction a moment before
// PostgreSQL shows its rows to others (the commit is in the log before the
// writer's session marks it done), so a kept row may not be there yet for
// the delete that follows its acknowledgement.
const visibleWithin = 2 * time.Second

// recent reports whether e came from the stream lately enough that its row
// may not be visible yet.
func recent(e *entry) bool { return e.tx != nil && time.Since(e.tx.commit) < visibleWithin }

// deleteKept deletes the rows of the acknowledged kept events. Rows not
// found that may not be visible yet are tried again, briefly.
func (s *Source) deleteKept(ctx context.Context, entries []*entry, outcomes []outbox.Outcome) error {
	want := make(map[uuid.UUID]*entry)
	for i, e := range entries {
		if outcomes[i].Kind == outbox.OutcomePublished && e.kept {
			want[e.rec.ID] = e
		}
	}
	deadline := time.Now().Add(visibleWithin)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		ids := make([]uuid.UUID, 0, len(want))
		for id := range want {
			ids = append(ids, id)
		}
		rows, _ := s.pool.Query(ctx, s.sql.deleteRows+" RETURNING id", ids)
		deleted, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return err
		}
		for _, id := range deleted {
			delete(want, id)
		}
		for id, e := range want {
			if !recent(e) {
				delete(want, id) // gone already (published before a restart)
			}
		}
		if len(want) == 0 || time.Now().After(deadline) {
			return nil
		}
		sleep(ctx, wait)
	}
}

// awaitVisible waits until the rows of the kept events with outcome kind
// are visible, or may not be expected any more.
func (s *Source) awaitVisible(ctx context.Context, entries []*entry, outcomes []outbox.Outcome, kind outbox.OutcomeKind) error {
	var ids []uuid.UUID
	for i, e := range entries {
		if outcomes[i].Kind == kind && e.kept && recent(e) {
			ids = append(ids, e.rec.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	deadline := time.Now().Add(visibleWithin)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		var n int
		if err := s.pool.QueryRow(ctx, s.sql.countRows, ids).Scan(&n); err != nil {
			return err
		}
		if n == len(ids) || time.Now().After(deadline) {
			return nil
		}
		sleep(ctx, wait)
	}
}
