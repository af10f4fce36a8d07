package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/outbox"
)

// drainKind is what drains a backlog: Herald's relay or the plain loop.
type drainKind string

const (
	drainRelay    drainKind = "relay"
	drainBaseline drainKind = "baseline"
)

// DrainRun is one timed drain of a preloaded backlog.
type DrainRun struct {
	Kind         string  `json:"kind"`
	Events       int     `json:"events"`
	Aggregates   int     `json:"aggregates"`
	Published    int64   `json:"published"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// RSS is the process's resident memory after the preload (garbage
	// collected and returned to the OS) and its peak during the drain.
	RSSIdleMiB float64 `json:"rss_idle_mib"`
	RSSPeakMiB float64 `json:"rss_peak_mib"`
	PreloadSec float64 `json:"preload_seconds"`
	Retried    uint64  `json:"retried"`
	DeadLetter uint64  `json:"dead_lettered"`
	Load1      float64 `json:"load1"`
	// Processes is the number of relay processes that drained (--processes),
	// and RSSProcessMiB the highest peak RSS of one of them.
	Processes     int           `json:"processes,omitempty"`
	RSSProcessMiB float64       `json:"rss_process_peak_mib,omitempty"`
	Phases        PhaseMeans    `json:"phases"`
	Verify        *VerifyReport `json:"verify,omitempty"`
	load          Load
}

// DrainResult is the result of the relay, baseline and compare modes.
type DrainResult struct {
	Mode     Mode
	Database string
	Broker   string
	Workers  int
	Batch    int
	Runs     []DrainRun
}

// runDrain preloads a fresh backlog and drains it once per kind.
func runDrain(ctx context.Context, cfg Config, kinds []drainKind) (*DrainResult, error) {
	br, err := openBroker(cfg)
	if err != nil {
		return nil, err
	}
	defer br.Close()
	rc := relayConfig(cfg.App.Relay)
	spec, _ := app.ParseDatabaseURL(cfg.App.DatabaseURL, "")
	res := &DrainResult{Mode: cfg.Mode, Database: spec.Kind.String(), Broker: brokerName(br), Workers: rc.Workers, Batch: rc.BatchSize}
	for _, k := range kinds {
		run, err := drainOnce(ctx, cfg, br, k)
		if err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

func brokerName(b *broker) string { return brokerLabel(b) }

func drainOnce(ctx context.Context, cfg Config, br *broker, kind drainKind) (DrainRun, error) {
	rc := relayConfig(cfg.App.Relay)
	run := DrainRun{Kind: string(kind), Events: cfg.Events}
	db, err := openDatabase(ctx, cfg, rc.Workers+4)
	if err != nil {
		return run, err
	}
	defer db.Close()
	b := newBacklog(cfg.Events, cfg.Aggregates)
	run.Aggregates = b.Aggregates
	note(cfg, "%s: preloading %d events over %d aggregates", kind, b.Events, b.Aggregates)
	t0 := time.Now()
	if err := b.preload(ctx, db); err != nil {
		return run, err
	}
	run.PreloadSec = round2(time.Since(t0).Seconds())

	ep, err := newEndpoint(ctx, br)
	if err != nil {
		return run, err
	}
	defer ep.Close()
	var pub outbox.Publisher
	if kind == drainBaseline {
		pub, err = ep.openPlain(ctx)
	} else {
		pub, err = ep.connect(ctx)
	}
	if err != nil {
		return run, err
	}
	defer func() { _ = pub.Close() }()
	// A webhook keeps nothing: its receiver checks the events as they come.
	var live *reading
	if cfg.Verify && ep.live {
		if live, err = startReadBack(ctx, ep, b, true); err != nil {
			return run, err
		}
	}

	// The preload's garbage is not the drain's: collect it, give it back to
	// the OS, and restart the peak (VmHWM) from here.
	runtime.GC()
	debug.FreeOSMemory()
	hwmReset := ResetPeakRSS()
	idle := ReadMem()
	run.RSSIdleMiB = mib(idle.RSS)
	sampler := startRSSSampler()

	var published atomic.Int64
	drainStart := time.Now()
	prog := StartProgress(cfg.Progress, func() (float64, string) {
		n := published.Load()
		rate := float64(n) / max(time.Since(drainStart).Seconds(), 1e-3)
		return float64(n) / float64(b.Events), fmt.Sprintf("%s: %d/%d events published (%.0f/s)", kind, n, b.Events, rate)
	})
	var (
		elapsed time.Duration
		counts  outbox.RelayCounters
	)
	run.load = ReadLoad()
	ph := &phases{}
	switch {
	case kind == drainRelay && cfg.Processes > 0:
		var peak int64
		elapsed, peak, err = drainWithProcesses(ctx, cfg, db, ep, int64(b.Events), &published)
		run.Processes, run.RSSProcessMiB = cfg.Processes, mib(peak)
	case kind == drainRelay:
		elapsed, counts, err = drainWithRelay(ctx, cfg, timedStore{Store: db.store, p: ph}, timedPublisher{Publisher: pub, p: ph}, int64(b.Events), &published)
	case kind == drainBaseline:
		elapsed, err = drainWithBaseline(ctx, cfg, db, timedPublisher{Publisher: pub, p: ph}, ph, int64(b.Events), &published)
	}
	run.Phases = ph.means()
	prog.Stop()
	peak := sampler.stop()
	if hwmReset {
		peak = max(peak, ReadMem().HWM)
	}
	run.RSSPeakMiB = mib(peak)
	run.Load1 = run.load.One
	if err != nil {
		return run, err
	}
	run.Published = published.Load()
	run.Seconds = round2(elapsed.Seconds())
	run.EventsPerSec = round2(float64(run.Published) / elapsed.Seconds())
	run.Retried, run.DeadLetter = counts.Retried, counts.DeadLettered
	_ = pub.Close()

	switch {
	case live != nil:
		rep := live.finish(ctx, 10*time.Second)
		run.Verify = &rep
	case cfg.Verify:
		note(cfg, "%s: reading the %s back", kind, ep.kind)
		rep, err := readBack(ctx, ep, b, 10*time.Second)
		if err != nil {
			return run, err
		}
		run.Verify = &rep
	}
	return run, nil
}

// note prints a line of progress information.
func note(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		_, _ = fmt.Fprintf(cfg.Progress, "bench: "+format+"\n", args...)
	}
}

// rssSampler samples VmRSS every few milliseconds and keeps the peak.
type rssSampler struct {
	peak atomic.Int64
	quit chan struct{}
	done chan struct{}
}

func startRSSSampler() *rssSampler {
	s := &rssSampler{quit: make(chan struct{}), done: make(chan struct{})}
	s.peak.Store(ReadMem().RSS)
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
				if r := ReadMem().RSS; r > s.peak.Load() {
					s.peak.Store(r)
				}
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() int64 {
	close(s.quit)
	<-s.done
	return max(s.peak.Load(), ReadMem().RSS)
}

// waitProgress waits until count reaches total. It fails when ctx ends or
// count has not moved for stall.
func waitProgress(ctx context.Context, count func() int64, total int64, stall time.Duration) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	last, lastAt := int64(-1), time.Now()
	for {
		n := count()
		if n >= total {
			return nil
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > stall {
			return fmt.Errorf("bench: drain stalled at %d of %d events for %s", n, total, stall)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// drainWithRelay runs Herald's relay until it has published total events.
func drainWithRelay(ctx context.Context, cfg Config, store outbox.Store, pub outbox.Publisher, total int64, published *atomic.Int64) (time.Duration, outbox.RelayCounters, error) {
	rc := relayConfig(cfg.App.Relay)
	rc.Logger = cfg.Logger.With("component", "relay")
	relay := outbox.NewRelay(store, pub, rc)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		_ = relay.Run(rctx)
	}()
	err := waitProgress(ctx, func() int64 {
		c := relay.Counters()
		n := int64(c.Published) //nolint:gosec // a count of events
		published.Store(n)
		return n + int64(c.DeadLettered) //nolint:gosec // a count of events
	}, total, cfg.DrainTimeout)
	elapsed := time.Since(start)
	cancel()
	<-done
	published.Store(int64(relay.Counters().Published)) //nolint:gosec // a count of events
	return elapsed, relay.Counters(), err
}

// drainWithBaseline runs the plain loop with the relay's workers and batch
// size: in one transaction, DELETE a batch … RETURNING it, publish it
// asynchronously and await the acks, COMMIT. It keeps no per-aggregate order
// and never retries: it is what a hand-written relay over the same table
// would be, written as tight as we can (see baselinePG).
func drainWithBaseline(ctx context.Context, cfg Config, db *database, pub outbox.Publisher, ph *phases, total int64, published *atomic.Int64) (time.Duration, error) {
	rc := relayConfig(cfg.App.Relay)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		if bctx.Err() == nil {
			errMu.Lock()
			firstErr = cmpErr(firstErr, err)
			errMu.Unlock()
			cancel()
		}
	}
	start := time.Now()
	for range rc.Workers {
		wg.Go(func() {
			if db.pool != nil {
				if err := baselineWorkerPG(bctx, db.pool, pub, ph, rc.BatchSize, rc.Source, total, published); err != nil {
					fail(err)
				}
				return
			}
			for bctx.Err() == nil && published.Load() < total {
				n, err := baselineBatchSQLite(bctx, db.sq.DB(), pub, ph, rc.BatchSize, rc.Source)
				if err != nil {
					fail(err)
					return
				}
				published.Add(int64(n))
				if n == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	err := waitProgress(bctx, published.Load, total, cfg.DrainTimeout)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	if firstErr != nil {
		return elapsed, firstErr
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return elapsed, err
	}
	return elapsed, ctx.Err()
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// baselinePGSQL takes the oldest rows, skipping those another worker holds.
const baselinePGSQL = `DELETE FROM order_outbox WHERE id IN (
	SELECT id FROM order_outbox ORDER BY pos LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, created_at`

// baselineWorkerPG is one worker of the plain loop on PostgreSQL. It keeps a
// connection of its own (no pool round per batch), sends BEGIN and the
// DELETE … RETURNING in one round trip (a pipeline), and ends the
// transaction with a bare COMMIT; statements are prepared once (pgx's
// statement cache).
func baselineWorkerPG(ctx context.Context, pool *pgxpool.Pool, pub outbox.Publisher, ph *phases, limit int, source string, total int64, published *atomic.Int64) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for ctx.Err() == nil && published.Load() < total {
		n, err := baselineBatchPG(ctx, conn.Conn(), pub, ph, limit, source)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		published.Add(int64(n))
		if n == 0 {
			time.Sleep(time.Millisecond) // the rest is locked by another worker
		}
	}
	return nil
}

func baselineBatchPG(ctx context.Context, conn *pgx.Conn, pub outbox.Publisher, ph *phases, limit int, source string) (_ int, err error) {
	t0 := time.Now()
	done := false
	defer func() {
		if !done {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(baselinePGSQL, limit)
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return 0, fmt.Errorf("bench: baseline: begin: %w", err)
	}
	rows, _ := br.Query()
	var records []outbox.Record
	for rows.Next() {
		var (
			r       outbox.Record
			payload []byte
		)
		if err := rows.Scan(&r.ID, &r.AggregateType, &r.AggregateID, &r.Type, &payload, &r.Headers, &r.Sequence, &r.CreatedAt); err != nil {
			rows.Close()
			_ = br.Close()
			return 0, err
		}
		r.Payload = payload
		records = append(records, r)
	}
	rows.Close()
	if err := errors.Join(rows.Err(), br.Close()); err != nil {
		return 0, fmt.Errorf("bench: baseline: %w", err)
	}
	if len(records) == 0 {
		return 0, nil
	}
	ph.claim.Add(time.Since(t0))
	if err := publishAll(ctx, pub, records, source); err != nil {
		return 0, err
	}
	t1 := time.Now()
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return 0, fmt.Errorf("bench: baseline: commit: %w", err)
	}
	done = true
	ph.finish.Add(time.Since(t1))
	return len(records), nil
}

const baselineSQLiteSQL = `DELETE FROM order_outbox WHERE pos IN (
	SELECT pos FROM order_outbox ORDER BY pos LIMIT ?1)
RETURNING id, aggregate_type, aggregate_id, event_type, payload, headers, sequence, created_at`

func baselineBatchSQLite(ctx context.Context, db *sql.DB, pub outbox.Publisher, ph *phases, limit int, source string) (int, error) {
	t0 := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	records, err := scanBaselineSQLite(ctx, tx, limit)
	if err != nil {
		return 0, fmt.Errorf("bench: baseline: %w", err)
	}
	if len(records) == 0 {
		return 0, nil
	}
	ph.claim.Add(time.Since(t0))
	if err := publishAll(ctx, pub, records, source); err != nil {
		return 0, err
	}
	t1 := time.Now()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("bench: baseline: commit: %w", err)
	}
	ph.finish.Add(time.Since(t1))
	return len(records), nil
}

func scanBaselineSQLite(ctx context.Context, tx *sql.Tx, limit int) ([]outbox.Record, error) {
	rows, err := tx.QueryContext(ctx, baselineSQLiteSQL, limit)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var records []outbox.Record
	for rows.Next() {
		var (
			r                    outbox.Record
			id, payload, headers string
			created              int64
		)
		if err := rows.Scan(&id, &r.AggregateType, &r.AggregateID, &r.Type, &payload, &headers, &r.Sequence, &created); err != nil {
			return nil, err
		}
		if r.ID, err = uuid.Parse(id); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(headers), &r.Headers); err != nil {
			return nil, err
		}
		r.Payload = json.RawMessage(payload)
		r.CreatedAt = time.UnixMicro(created).UTC()
		records = append(records, r)
	}
	return records, rows.Err()
}

// publishAll encodes records as the relay does and publishes them as one
// batch; any failure fails the batch.
func publishAll(ctx context.Context, pub outbox.Publisher, records []outbox.Record, source string) error {
	msgs := make([]outbox.Message, len(records))
	for i := range records {
		body, err := outbox.EncodeCloudEvent(&records[i], source)
		if err != nil {
			return err
		}
		msgs[i] = outbox.Message{Record: records[i], Body: body}
	}
	for i, err := range pub.Publish(ctx, msgs) {
		if err != nil {
			return fmt.Errorf("bench: baseline: publish event %s: %w", msgs[i].ID, err)
		}
	}
	return nil
}

// ratio is relay/baseline: the median relay rate over the median baseline
// rate, 0 when either is missing.
func (r *DrainResult) ratio() float64 {
	med := func(kind drainKind) float64 {
		var xs []float64
		for _, run := range r.Runs {
			if run.Kind == string(kind) {
				xs = append(xs, run.EventsPerSec)
			}
		}
		return median(xs)
	}
	b, rl := med(drainBaseline), med(drainRelay)
	if b == 0 || rl == 0 {
		return 0
	}
	return rl / b
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteSummary writes one line per drain and, for compare, the ratio.
func (r *DrainResult) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintf(w, "herald bench --mode %s: %s → %s, workers %d, batch %d\n", r.Mode, r.Database, r.Broker, r.Workers, r.Batch)
	_, _ = fmt.Fprintln(tw, "drain\tevents\taggregates\tseconds\tevents/s\tRSS idle MiB\tRSS peak MiB\tlost\treordered\tduplicates\tload1\t")
	for _, run := range r.Runs {
		lost, reord, dup := "-", "-", "-"
		if v := run.Verify; v != nil {
			lost, reord, dup = fmt.Sprint(v.Lost), fmt.Sprint(v.Reordered), fmt.Sprint(v.Duplicates)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.0f\t%.1f\t%.1f\t%s\t%s\t%s\t%.2f\t\n",
			run.Kind, run.Published, run.Aggregates, run.Seconds, run.EventsPerSec, run.RSSIdleMiB, run.RSSPeakMiB, lost, reord, dup, run.Load1)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, run := range r.Runs {
		if run.Processes > 0 {
			_, _ = fmt.Fprintf(w, "  %s: %d relay processes, the largest peaking at %.1f MiB RSS\n", run.Kind, run.Processes, run.RSSProcessMiB)
			continue
		}
		_, _ = fmt.Fprintf(w, "  %s: %s\n", run.Kind, run.Phases)
	}
	if r.Mode == ModeCompare {
		_, err := fmt.Fprintf(w, "relay/baseline: %.2f\n", r.ratio())
		return err
	}
	return nil
}

// drainJSON is the JSON line of the relay, baseline and compare modes.
type drainJSON struct {
	Mode         Mode       `json:"mode"`
	Database     string     `json:"db"`
	Broker       string     `json:"broker"`
	Workers      int        `json:"workers"`
	BatchSize    int        `json:"batch_size"`
	Events       int64      `json:"events"`
	EventsPerSec float64    `json:"events_per_sec,omitempty"`
	RSSPeakMiB   float64    `json:"rss_peak_mib,omitempty"`
	Ratio        float64    `json:"relay_baseline_ratio,omitempty"`
	Lost         int64      `json:"lost"`
	Reordered    int64      `json:"reordered"`
	Duplicates   int64      `json:"duplicates"`
	Runs         []DrainRun `json:"runs"`
}

// JSON returns the result's line.
func (r *DrainResult) JSON() any {
	j := drainJSON{Mode: r.Mode, Database: r.Database, Broker: r.Broker, Workers: r.Workers, BatchSize: r.Batch, Runs: r.Runs}
	var rates []float64
	for _, run := range r.Runs {
		j.Events += run.Published
		if v := run.Verify; v != nil {
			j.Lost += v.Lost
			j.Duplicates += v.Duplicates
			if run.Kind == string(drainRelay) {
				j.Reordered += v.Reordered // the plain loop keeps no order
			}
		}
		rates = append(rates, run.EventsPerSec)
		j.RSSPeakMiB = max(j.RSSPeakMiB, run.RSSPeakMiB)
	}
	if r.Mode == ModeCompare {
		j.Ratio = round2(r.ratio())
	} else {
		j.EventsPerSec = round2(median(rates))
	}
	return j
}

// Failure reports lost events, and reordered ones of the relay (the plain
// loop does not promise order).
func (r *DrainResult) Failure() error {
	var errs []error
	for _, run := range r.Runs {
		v := run.Verify
		if v == nil {
			continue
		}
		if v.Lost > 0 || v.Unexpected > 0 || v.Invalid > 0 {
			errs = append(errs, fmt.Errorf("%s: %d events lost, %d unexpected, %d unreadable (e.g. %v)", run.Kind, v.Lost, v.Unexpected, v.Invalid, v.Examples))
		}
		if run.Kind == string(drainRelay) && v.Reordered > 0 {
			errs = append(errs, fmt.Errorf("relay: %d events reordered", v.Reordered))
		}
	}
	return errors.Join(errs...)
}
