package pgcdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// errSlotBusy is a session's end when another connection streams the slot.
var errSlotBusy = errors.New("pgcdc: the replication slot is in use")

// Listen streams the outbox's inserts from the replication slot until ctx
// is done, calling wake when events are ready to claim. When another relay
// streams the slot, it waits and tries again every RetryInterval, logging
// once that it waits; when the connection is lost, it reconnects and reads
// again from the slot's confirmed position. It returns only when ctx ends.
func (s *Source) Listen(ctx context.Context, wake func()) error {
	s.mu.Lock()
	s.wake = wake
	s.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.checkReleases(cctx) })
	defer wg.Wait()
	defer cancel()
	waiting := false
	for ctx.Err() == nil {
		err := s.session(ctx, wake, &waiting)
		if ctx.Err() != nil {
			return nil
		}
		var pgErr *pgconn.PgError
		switch {
		case errors.Is(err, errSlotBusy) || errors.As(err, &pgErr) && pgErr.Code == "55006":
			if !waiting {
				s.cfg.Logger.Info("pgcdc: another relay streams the replication slot; waiting to take it over",
					"slot", s.cfg.Slot, "detail", err)
				waiting = true
			}
		default:
			s.cfg.Logger.Warn("pgcdc: replication stream ended; reconnecting", "slot", s.cfg.Slot, "err", err,
				"retry_in", s.cfg.RetryInterval)
		}
		sleep(ctx, s.cfg.RetryInterval)
	}
	return nil
}

// Streaming reports whether this source streams the slot now (another
// relay's source may hold it, and this one waits).
func (s *Source) Streaming() bool { return s.streaming.Load() }

// session streams the slot on one connection until it fails.
func (s *Source) session(ctx context.Context, wake func(), waiting *bool) error {
	// The prefix of the messages that carry the outbox's events
	// (pgstore.Config.WALMessages) ends with the table's oid, looked up
	// for each session: a table made again since the last one has another.
	var oid *uint32
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass($1)::oid", s.names.Name).Scan(&oid); err != nil {
		return fmt.Errorf("look up the outbox table: %w", err)
	}
	if oid == nil {
		return fmt.Errorf("the outbox table %s does not exist: migrate first", s.names.Name)
	}
	conn, err := pgconn.ConnectConfig(ctx, s.repl)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	err = pglogrepl.StartReplication(ctx, conn, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", s.cfg.Publication),
			"messages 'true'"},
	})
	if err != nil {
		return err
	}
	var start lsn
	if err := s.pool.QueryRow(ctx, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", s.cfg.Slot).Scan(&start); err != nil {
		return fmt.Errorf("read the slot's position: %w", err)
	}
	s.mu.Lock()
	first := !s.q.started
	s.q.reset(start)
	s.mu.Unlock()
	if first {
		// Rows already in the table when the relay starts: written before
		// the slot existed, or kept by writers, or parked. Read those of
		// aggregates not parked; the stream's copies are dropped.
		s.parkMu.Lock()
		_, err := s.load(ctx, nil, nil, true)
		s.parkMu.Unlock()
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.q.started = true
		s.mu.Unlock()
	}
	if *waiting {
		s.cfg.Logger.Info("pgcdc: took over the replication slot", "slot", s.cfg.Slot)
		*waiting = false
	}
	s.streaming.Store(true)
	defer s.streaming.Store(false)
	s.cfg.Logger.Info("pgcdc: streaming", "slot", s.cfg.Slot, "publication", s.cfg.Publication, "from", start.String())

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &statusSender{conn: conn, poke: make(chan bool, 1), confirmed: start}
	s.mu.Lock()
	s.status = st
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.status = nil
		s.mu.Unlock()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errs := make(chan error, 1)
	wg.Go(func() {
		if err := st.run(sctx, s); err != nil {
			errs <- err
			cancel()
		}
	})
	d := decoder{s: s, wake: wake, status: st, messages: pgstore.MessagePrefix + strconv.FormatUint(uint64(*oid), 10)}
	for {
		msg, err := conn.ReceiveMessage(sctx)
		if err != nil {
			select {
			case err := <-errs:
				return fmt.Errorf("status update: %w", err)
			default:
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := d.copyData(sctx, msg.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		case *pgproto3.NoticeResponse:
		default:
			return fmt.Errorf("unexpected message %T", msg)
		}
	}
}

// statusSender sends standby status updates: every StatusInterval, when
// the server asks, and when the confirmable position moves (at most every
// minStatusGap).
type statusSender struct {
	conn      *pgconn.PgConn
	poke      chan bool // true: the server asked for a reply
	confirmed lsn
}

const minStatusGap = 50 * time.Millisecond

func (st *statusSender) nudge(reply bool) {
	select {
	case st.poke <- reply:
	default:
	}
}

func (st *statusSender) run(ctx context.Context, s *Source) error {
	t := time.NewTimer(s.cfg.StatusInterval)
	defer t.Stop()
	last := time.Time{}
	for {
		force := false
		select {
		case <-ctx.Done():
			return nil
		case force = <-st.poke:
		case <-t.C:
			force = true
		}
		if !force {
			if wait := minStatusGap - time.Since(last); wait > 0 {
				sleep(ctx, wait)
			}
		}
		s.mu.Lock()
		c := s.q.confirmable()
		s.mu.Unlock()
		if c < st.confirmed {
			c = st.confirmed
		}
		if c == st.confirmed && !force {
			continue
		}
		if err := pglogrepl.SendStandbyStatusUpdate(ctx, st.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: c}); err != nil {
			return err
		}
		st.confirmed, last = c, time.Now()
		t.Reset(s.cfg.StatusInterval)
	}
}

// decoder turns pgoutput messages into entries.
type decoder struct {
	s        *Source
	wake     func()
	status   *statusSender
	messages string // the prefix of the outbox's event messages
	rels     map[uint32]*relation
	tx       *txBuild
}

// relation is the column layout of the outbox table.
type relation struct {
	cols map[string]int
	id   int
}

// txBuild collects one transaction's events until its commit.
type txBuild struct {
	commit  time.Time
	skip    bool // the source's own parking transaction
	entries []*entry
	byID    map[uuid.UUID]*entry
}

func (d *decoder) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return err
		}
		if d.tx == nil {
			d.s.mu.Lock()
			if pkm.ServerWALEnd > d.s.q.lastEnd {
				d.s.q.lastEnd = pkm.ServerWALEnd
			}
			d.s.mu.Unlock()
		}
		if pkm.ReplyRequested {
			d.status.nudge(true)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return err
		}
		return d.logical(ctx, xld.WALData)
	}
	return nil
}

func (d *decoder) logical(ctx context.Context, data []byte) error {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		rel := &relation{cols: make(map[string]int, len(m.Columns)), id: -1}
		for i, c := range m.Columns {
			rel.cols[c.Name] = i
		}
		if i, ok := rel.cols["id"]; ok {
			rel.id = i
		}
		if d.rels == nil {
			d.rels = make(map[uint32]*relation)
		}
		d.rels[m.RelationID] = rel
	case *pglogrepl.BeginMessage:
		d.tx = &txBuild{commit: m.CommitTime}
	case *pglogrepl.LogicalDecodingMessage:
		if d.tx == nil || !m.Transactional {
			return nil
		}
		switch m.Prefix {
		case parkPrefix:
			d.tx.skip = true
		case d.messages:
			// An event written as a message (pgstore.Config.WALMessages):
			// it has no row, as if deleted in its transaction.
			if d.tx.skip {
				return nil // never so today: parking writes rows only
			}
			rec, err := decodeMessage(m.Content)
			if err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			d.tx.entries = append(d.tx.entries, &entry{rec: rec})
		}
	case *pglogrepl.InsertMessage:
		if d.tx == nil || d.tx.skip {
			return nil
		}
		rel := d.rels[m.RelationID]
		if rel == nil {
			return fmt.Errorf("decode: insert into unknown relation %d", m.RelationID)
		}
		rec, err := rel.record(m.Tuple)
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		e := &entry{rec: rec, kept: true}
		d.tx.entries = append(d.tx.entries, e)
		if d.tx.byID == nil {
			d.tx.byID = make(map[uuid.UUID]*entry)
		}
		d.tx.byID[rec.ID] = e
	case *pglogrepl.DeleteMessage:
		if d.tx == nil || len(d.tx.byID) == 0 || m.OldTuple == nil {
			return nil
		}
		rel := d.rels[m.RelationID]
		if rel == nil || rel.id < 0 || rel.id >= len(m.OldTuple.Columns) {
			return nil
		}
		id, err := uuid.ParseBytes(m.OldTuple.Columns[rel.id].Data)
		if err != nil {
			return nil //nolint:nilerr // not a row the stream cares about
		}
		if e := d.tx.byID[id]; e != nil {
			e.kept = false // deleted in its own transaction
		}
	case *pglogrepl.CommitMessage:
		tx := d.tx
		d.tx = nil
		if tx == nil {
			return nil
		}
		return d.s.commit(ctx, tx, m.TransactionEndLSN, d.wake, d.status)
	}
	return nil
}

// commit adds a transaction's events to the queue, waiting while the queue
// is full.
func (s *Source) commit(ctx context.Context, b *txBuild, end lsn, wake func(), st *statusSender) error {
	for {
		s.mu.Lock()
		if s.q.buffered < s.cfg.MaxBuffered || len(b.entries) == 0 {
			break
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.space:
		case <-time.After(time.Second):
		}
	}
	defer s.mu.Unlock()
	q := &s.q
	t := &txn{end: end, after: q.lastEnd, commit: b.commit}
	now := time.Now()
	for _, e := range b.entries {
		if until, ok := q.loaded[e.rec.ID]; ok && end <= until {
			continue // read back from the table already
		}
		e.tx, e.gen = t, q.gen
		t.remaining++
		q.buffered++
		a := q.agg(aggKey{e.rec.AggregateType, e.rec.AggregateID})
		a.queue = append(a.queue, e)
		q.schedule(a, now)
	}
	if t.remaining > 0 {
		q.link(t)
	}
	if end > q.lastEnd {
		q.lastEnd = end
	}
	if t.remaining > 0 {
		wake()
	} else {
		st.nudge(false)
	}
	return nil
}

// record decodes an inserted row (text format).
func (r *relation) record(t *pglogrepl.TupleData) (outbox.Record, error) {
	var rec outbox.Record
	col := func(name string) (*pglogrepl.TupleDataColumn, error) {
		i, ok := r.cols[name]
		if !ok || t == nil || i >= len(t.Columns) {
			return nil, fmt.Errorf("the outbox row has no column %s", name)
		}
		return t.Columns[i], nil
	}
	text := func(name string, required bool) (string, error) {
		c, err := col(name)
		if err != nil {
			return "", err
		}
		if c.DataType != pglogrepl.TupleDataTypeText {
			if required || c.DataType != pglogrepl.TupleDataTypeNull {
				return "", fmt.Errorf("column %s: unexpected data kind %q", name, c.DataType)
			}
			return "", nil
		}
		return string(c.Data), nil
	}
	var errs []error
	get := func(name string, required bool) string {
		v, err := text(name, required)
		errs = append(errs, err)
		return v
	}
	id := get("id", true)
	rec.AggregateType = get("aggregate_type", true)
	rec.AggregateID = get("aggregate_id", true)
	rec.Type = get("event_type", true)
	payload := get("payload", true)
	headers := get("headers", true)
	rec.IdempotencyKey = get("idempotency_key", false)
	seq := get("sequence", true)
	attempts := get("attempts", true)
	rec.LastError = get("last_error", false)
	created := get("created_at", true)
	failed := get("first_failed_at", false)
	if err := errors.Join(errs...); err != nil {
		return rec, err
	}
	var err error
	if rec.ID, err = uuid.Parse(id); err != nil {
		return rec, fmt.Errorf("id: %w", err)
	}
	rec.Payload = json.RawMessage(payload)
	if headers != "{}" {
		if err := json.Unmarshal([]byte(headers), &rec.Headers); err != nil {
			return rec, fmt.Errorf("headers: %w", err)
		}
	}
	if rec.Sequence, err = strconv.ParseInt(seq, 10, 64); err != nil {
		return rec, fmt.Errorf("sequence: %w", err)
	}
	if rec.Attempts, err = strconv.Atoi(attempts); err != nil {
		return rec, fmt.Errorf("attempts: %w", err)
	}
	if rec.CreatedAt, err = parseTime(created); err != nil {
		return rec, fmt.Errorf("created_at: %w", err)
	}
	if failed != "" {
		if rec.FirstFailedAt, err = parseTime(failed); err != nil {
			return rec, fmt.Errorf("first_failed_at: %w", err)
		}
	}
	return rec, nil
}

// parseTime parses a timestamptz in PostgreSQL's ISO text format (the
// replication connection sets DateStyle ISO and TimeZone UTC).
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse("2006-01-02 15:04:05.999999999-07", s)
	if err != nil {
		t, err = time.Parse("2006-01-02 15:04:05.999999999-07:00", s)
	}
	return t, err
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
