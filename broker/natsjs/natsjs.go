// Package natsjs publishes outbox events to NATS JetStream.
//
// Each event goes to subject <SubjectPrefix><event type> (by default
// outbox.invoice.paid) of the stream Stream (by default OUTBOX, subjects
// outbox.>), with its CloudEvents JSON as the body and these headers:
//
//	Nats-Msg-Id   the event id, so JetStream drops a re-published event
//	              within the stream's duplicate window: a relay that
//	              crashed after the broker's ack publishes it again
//	Content-Type  application/cloudevents+json
//	traceparent   and tracestate, when the event carries a trace context
//
// A batch is published asynchronously and its acks are awaited together: one
// round trip per batch, not one per message.
//
// # Runs
//
// JetStream stores one connection's publishes in order, but plain async
// publishing cannot promise that one aggregate's later message is never
// stored after an earlier one was lost (a reconnect in between, a
// clustered stream's leader change). On NATS server 2.12 and later the
// Publisher is an outbox.RunPublisher: the stream is created or updated
// with AllowAtomicPublish, and Publish sends the messages of each
// aggregate that has several in the call (a run) as atomic batches
// (ADR-50: headers Nats-Batch-Id, Nats-Batch-Sequence, Nats-Batch-Commit on
// the last, which is a request answered for the whole batch): the server
// stores a batch whole or not at all, and refuses it whole when a message
// of it is missing. A run longer than Config.MaxBatch (default 1000, the
// server's default max_batch_size) goes in consecutive batches, each sent
// once the previous one is acked; once one fails, the rest of the run is
// not sent and fails with outbox.ErrRunBroken. A message the server would
// refuse for good (no valid subject, over the max payload or the stream's
// max message size) is found before the batch is sent: the batch ends
// before it, it fails permanently and the rest of the run is broken.
//
// When the server refuses a batch (a stream limit, say: its answer does
// not say which message), the batch is sent again one message at a time,
// each after the previous one's ack, which finds the message refused. The
// same happens to a run published again by a relay that crashed after the
// ack: the server (2.15) refuses an atomic batch holding a Nats-Msg-Id it
// already stored ("atomic publish batch contains duplicate message id")
// instead of dropping that message, so the run goes again one message at a
// time, JetStream drops each duplicate and stores what is new, and every
// message is reported published. A batch whose answer never came (the
// context ended, the connection was lost) may have been stored, whole:
// its messages keep that error, not ErrRunBroken.
//
// Single messages of an aggregate are published as before. KeepsRuns
// reports false on a server older than 2.12 (the batch headers would be
// ignored there), and while the stream does not allow atomic publishes;
// the relay then sends one event per aggregate per call. Should the
// connection move to such a server after the relay asked, a run is sent
// one message at a time, each after the previous one's ack.
//
// Subscribe reads the stream back, for herald tail, herald bench and tests.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/outbox"
)

// Defaults of Config.
const (
	DefaultStream          = "OUTBOX"
	DefaultSubjectPrefix   = "outbox."
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultMaxPending      = 4096
	DefaultAckTimeout      = 30 * time.Second
)

// ContentType is the Content-Type header of every published message.
const ContentType = "application/cloudevents+json"

// ErrClosed is returned for messages published after Close.
var ErrClosed = errors.New("natsjs: publisher closed")

// Config configures a Publisher (and Subscribe). The zero value publishes to
// stream OUTBOX on outbox.>; Herald's orders service uses ORDERS on orders.>.
type Config struct {
	Stream string // stream name; default DefaultStream
	// SubjectPrefix is put before the event type to form the subject; the
	// stream takes SubjectPrefix + ">". A missing trailing dot is added.
	// Default DefaultSubjectPrefix.
	SubjectPrefix string
	// DuplicateWindow is how long JetStream remembers message ids to drop
	// duplicates; default DefaultDuplicateWindow.
	DuplicateWindow time.Duration
	// Replicas of the stream. A new stream gets Replicas, or 1 when zero;
	// an existing stream's replica count is changed only when Replicas is
	// set explicitly.
	Replicas int
	// MaxPending bounds the async publishes awaiting an ack, across all
	// concurrent Publish calls; a larger batch waits for acks to free
	// slots. Default DefaultMaxPending.
	MaxPending int
	// AckTimeout bounds the wait for one message's ack even when Publish's
	// context has no deadline; default DefaultAckTimeout.
	AckTimeout time.Duration
	// MaxBatch is the most messages of one atomic batch (see KeepsRuns);
	// a longer run goes in several, one after another. At most the
	// server's jetstream max_batch_size; default DefaultMaxBatch.
	MaxBatch int
	// Logger receives connection events (disconnects, reconnects, async
	// errors). Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if !strings.HasSuffix(c.SubjectPrefix, ".") {
		c.SubjectPrefix += "."
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports a configuration no publish could succeed with; checked
// up front so that it is not mistaken for a permanent failure of each event.
func (c Config) validate() error {
	if err := validSubjectSuffix(strings.TrimSuffix(c.SubjectPrefix, ".")); err != nil {
		return fmt.Errorf("natsjs: subject prefix %q: %w", c.SubjectPrefix, err)
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
		return fmt.Errorf("natsjs: invalid stream name %q", c.Stream)
	}
	return nil
}

// Subject returns the subject an event of type eventType is published on.
func (c Config) Subject(eventType string) string {
	return c.withDefaults().SubjectPrefix + eventType
}

// Publisher publishes outbox messages to a JetStream stream. It implements
// outbox.RunPublisher and is safe for concurrent use.
type Publisher struct {
	nc    *nats.Conn
	owned bool          // Close closes nc
	done  chan struct{} // closed when an owned nc has closed
	js    jetstream.JetStream
	cfg   Config

	// mu is held for reading by every Publish call and for writing by
	// Close, so that Close waits for batches in flight.
	mu     sync.RWMutex
	closed bool

	// recheck is set when JetStream reported no stream on our subjects
	// (someone deleted it); the next Publish recreates it first.
	recheck atomic.Bool

	// atomic is set while the stream allows atomic batch publishes (set
	// up by ensureStream on a server that has them); maxMsgSize is the
	// stream's max_msg_size (-1: none). See runs.go.
	atomic     atomic.Bool
	maxMsgSize atomic.Int32
	// batches bounds the atomic batches one publisher has open at once
	// (the server takes 50 per stream by default).
	batches chan struct{}
}

// Connect dials url and returns a Publisher on a connection of its own,
// which reconnects forever after a broker outage and fails publishes at
// once while disconnected (rather than buffering them), so that the relay
// retries them. It fails when the broker is unreachable or the stream
// cannot be created or updated (see New).
func Connect(ctx context.Context, url string, cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	nc, err := nats.Connect(url, connectOptions(ctx, cfg, done)...)
	if err != nil {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the URL, password and all
		}
		return nil, fmt.Errorf("natsjs: connect to %s: %w", redact(url), err)
	}
	p, err := newPublisher(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	p.owned, p.done = true, done
	return p, nil
}

// redact hides the passwords and tokens (nats://TOKEN@host) in a
// (comma-separated) server URL list, for error messages and logs.
func redact(raw string) string {
	parts := strings.Split(raw, ",")
	for i, part := range parts {
		u, err := neturl.Parse(strings.TrimSpace(part))
		if err != nil {
			return "(unparsable URL)"
		}
		if u.User != nil {
			if _, hasPassword := u.User.Password(); !hasPassword {
				u.User = neturl.User("xxxxx")
			}
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}

// ConnectOptions are the options Connect dials with; callers making their
// own connection (for Subscribe, say) may use them too.
func ConnectOptions(cfg Config) []nats.Option {
	return connectOptions(context.Background(), cfg.withDefaults(), nil)
}

func connectOptions(ctx context.Context, cfg Config, closed chan struct{}) []nats.Option {
	log := cfg.Logger
	opts := []nats.Option{
		nats.Name("herald"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		// No reconnect buffer: while disconnected a publish fails at once
		// and the relay retries it, instead of it waiting in a buffer.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				log.Warn("natsjs: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("natsjs: reconnected to NATS", "url", redact(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("natsjs: async error", "subject", subject, "err", err)
		}),
	}
	if deadline, ok := ctx.Deadline(); ok {
		if d := time.Until(deadline); d > 0 {
			opts = append(opts, nats.Timeout(d))
		}
	}
	if closed != nil {
		opts = append(opts, nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	}
	return opts
}

// New returns a Publisher on the caller's connection, which Close leaves
// open. It creates the stream, or updates an existing one so that it takes
// SubjectPrefix + ">" and has the configured duplicate window (other
// settings of an existing stream, such as limits, are kept).
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Publisher, error) {
	return newPublisher(ctx, nc, cfg.withDefaults())
}

func newPublisher(ctx context.Context, nc *nats.Conn, cfg Config) (*Publisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	p := &Publisher{nc: nc, js: js, cfg: cfg, batches: make(chan struct{}, maxOpenBatches)}
	if err := p.ensureStream(ctx, true); err != nil {
		js.CleanupPublisher()
		return nil, err
	}
	return p, nil
}

// ensureStream runs ensureStream for p and records what the stream allows.
func (p *Publisher) ensureStream(ctx context.Context, update bool) error {
	info, err := setupStream(ctx, p.js, p.cfg, update, atomicBatchesSupported(p.nc.ConnectedServerVersion()))
	if err != nil {
		return err
	}
	if info != nil {
		p.atomic.Store(info.Config.AllowAtomicPublish)
		p.maxMsgSize.Store(info.Config.MaxMsgSize)
	}
	return nil
}

// ensureStream creates the stream or, with update, brings an existing one
// in line with cfg; on a server with atomic batches, the stream allows them.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg Config, update bool) error {
	_, err := setupStream(ctx, js, cfg, update, atomicBatchesSupported(js.Conn().ConnectedServerVersion()))
	return err
}

// setupStream creates the stream or, with update, brings an existing one
// in line with cfg. With allowAtomic (the server has atomic batches) a
// stream it creates or updates allows atomic batch publishes. It returns
// the stream's info (nil when it only looked the stream up, update false).
func setupStream(ctx context.Context, js jetstream.JetStream, cfg Config, update, allowAtomic bool) (*jetstream.StreamInfo, error) {
	subjects := cfg.SubjectPrefix + ">"
	stream, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:               cfg.Stream,
			Subjects:           []string{subjects},
			Storage:            jetstream.FileStorage,
			Duplicates:         cfg.DuplicateWindow,
			Replicas:           max(cfg.Replicas, 1),
			AllowAtomicPublish: allowAtomic,
		})
		if err == nil {
			return stream.CachedInfo(), nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("natsjs: create stream %s: %w", cfg.Stream, err)
		}
		stream, err = js.Stream(ctx, cfg.Stream) // created concurrently
	}
	if err != nil {
		return nil, fmt.Errorf("natsjs: look up stream %s: %w", cfg.Stream, err)
	}
	if !update {
		return nil, nil
	}
	sc := stream.CachedInfo().Config
	changed := false
	if !slices.Contains(sc.Subjects, subjects) {
		sc.Subjects = append(sc.Subjects, subjects)
		changed = true
	}
	if sc.Duplicates != cfg.DuplicateWindow {
		sc.Duplicates = cfg.DuplicateWindow
		changed = true
	}
	if cfg.Replicas > 0 && sc.Replicas != cfg.Replicas {
		sc.Replicas = cfg.Replicas
		changed = true
	}
	if allowAtomic && !sc.AllowAtomicPublish {
		sc.AllowAtomicPublish = true
		if !changed {
			if s, err := js.UpdateStream(ctx, sc); err == nil {
				return s.CachedInfo(), nil
			}
			// Refused (a mirror, say): publish one at a time.
			return stream.CachedInfo(), nil
		}
		changed = true
	}
	if !changed {
		return stream.CachedInfo(), nil
	}
	updated, err := js.UpdateStream(ctx, sc)
	if err != nil && sc.AllowAtomicPublish && !stream.CachedInfo().Config.AllowAtomicPublish {
		sc.AllowAtomicPublish = false // perhaps what was refused
		updated, err = js.UpdateStream(ctx, sc)
	}
	if err != nil {
		return nil, fmt.Errorf("natsjs: update stream %s: %w", cfg.Stream, err)
	}
	return updated.CachedInfo(), nil
}

// Conn returns the connection the publisher uses.
func (p *Publisher) Conn() *nats.Conn { return p.nc }

// Config returns the publisher's configuration with defaults applied.
func (p *Publisher) Config() Config { return p.cfg }

// Publish sends every message asynchronously, then awaits all the acks, and
// returns one error per message: nil once JetStream has stored it (or
// dropped it as a duplicate of a stored one). Errors are retryable except
// for messages that can never be accepted (an event type that is no valid
// subject, a message over the server's max payload or the stream's max
// message size), which are wrapped with outbox.Permanent. When ctx ends,
// every message still unacknowledged fails with an error wrapping ctx.Err().
// After JetStream reported that no stream takes the subjects (the stream
// was deleted), the next call first recreates the stream.
//
// The messages of an aggregate that has several in msgs (a run, see
// KeepsRuns and the package doc) go as atomic batches, in order; after the
// first of them that fails, the later ones fail with an error wrapping
// outbox.ErrRunBroken and are not sent.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return outbox.AllFailed(len(msgs), ErrClosed)
	}
	if p.recheck.Load() && ctx.Err() == nil {
		if err := p.ensureStream(ctx, true); err != nil {
			p.cfg.Logger.Warn("natsjs: recreate stream", "stream", p.cfg.Stream, "err", err)
		} else {
			p.recheck.Store(false)
		}
	}

	runs := runsOf(msgs)
	atomic := len(runs) > 0 && p.KeepsRuns()
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() { p.publishRun(ctx, msgs, run, errs, atomic) })
	}
	defer wg.Wait()

	// Round one: send everything else.
	futures := make([]jetstream.PubAckFuture, len(msgs))
	inRun := make([]bool, len(msgs))
	for _, run := range runs {
		for _, i := range run {
			inRun[i] = true
		}
	}
	for i := range msgs {
		if inRun[i] {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs[i] = ctxError(err)
			continue
		}
		m, err := p.natsMsg(&msgs[i])
		if err != nil {
			errs[i] = err
			continue
		}
		f, err := p.js.PublishMsgAsync(m,
			jetstream.WithMsgID(msgs[i].ID.String()),
			jetstream.WithStallWait(p.stallWait(ctx)),
		)
		if err != nil {
			errs[i] = p.classify(err)
			continue
		}
		futures[i] = f
	}

	// Round two: await the acks.
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = p.classify(err)
		case <-ctx.Done():
			select { // an ack that has already arrived still counts
			case <-f.Ok():
			case err := <-f.Err():
				errs[i] = p.classify(err)
			default:
				errs[i] = ctxError(ctx.Err())
			}
		}
	}
	return errs
}

// natsMsg builds the wire message for m.
func (p *Publisher) natsMsg(m *outbox.Message) (*nats.Msg, error) {
	if err := validSubjectSuffix(m.Type); err != nil {
		return nil, outbox.Permanent(err)
	}
	h := nats.Header{}
	h.Set("Content-Type", ContentType)
	for _, k := range []string{"traceparent", "tracestate"} {
		if v := m.Headers[k]; v != "" {
			h.Set(k, v)
		}
	}
	return &nats.Msg{Subject: p.cfg.SubjectPrefix + m.Type, Header: h, Data: m.Body}, nil
}

// validSubjectSuffix reports why an event type cannot be a subject's tail.
func validSubjectSuffix(eventType string) error {
	if eventType == "" {
		return errors.New("natsjs: empty event type")
	}
	if strings.ContainsAny(eventType, " \t\r\n*>") {
		return fmt.Errorf("natsjs: event type %q is not a valid NATS subject (whitespace or wildcard)", eventType)
	}
	if eventType[0] == '.' || eventType[len(eventType)-1] == '.' || strings.Contains(eventType, "..") {
		return fmt.Errorf("natsjs: event type %q is not a valid NATS subject (empty token)", eventType)
	}
	return nil
}

// stallWait is how long one PublishMsgAsync may wait for a free slot when
// MaxPending acks are outstanding: until ctx's deadline, at most AckTimeout.
func (p *Publisher) stallWait(ctx context.Context) time.Duration {
	d := p.cfg.AckTimeout
	if deadline, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(deadline))
	}
	return max(d, time.Millisecond)
}

// classify wraps a publish error, marking Permanent what no retry can fix.
func (p *Publisher) classify(err error) error {
	switch {
	case errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum),
		errors.Is(err, nats.ErrBadSubject):
		return outbox.Permanent(fmt.Errorf("natsjs: %w", err))
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoServers):
		// With Connect's options a publish fails at once while reconnecting.
		// An outage of the broker, not a failure of the event.
		return fmt.Errorf("natsjs: disconnected from NATS, reconnecting: %w (%w)", err, outbox.ErrBrokerUnavailable)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		p.recheck.Store(true)
		return fmt.Errorf("natsjs: no stream %s listens on %s>: %w", p.cfg.Stream, p.cfg.SubjectPrefix, err)
	default:
		return fmt.Errorf("natsjs: %w", err)
	}
}

func ctxError(err error) error {
	return fmt.Errorf("natsjs: waiting for ack: %w", err)
}

// Close waits for Publish calls in flight, then releases the publisher; a
// connection made by Connect is drained and closed, one passed to New is
// left open. Publish after Close fails with ErrClosed. Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.js.CleanupPublisher()
	if !p.owned {
		return nil
	}
	if err := p.nc.Drain(); err != nil {
		p.nc.Close()
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.nc.Close()
	}
	return nil
}
