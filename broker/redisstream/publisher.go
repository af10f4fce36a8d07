package redisstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/outbox"
)

// Publisher adds outbox messages to a Redis stream. It implements
// outbox.Publisher and is safe for concurrent use: concurrent Publish calls
// use connections of their own.
type Publisher struct {
	rdb    *redis.Client
	cfg    Config
	health *health

	// maxBytes is the longest body sent. recheck is set when a batch with
	// a body over minMaxBulk failed: the server's limit may have been
	// lowered since it was read, and the next Publish reads it again.
	maxBytes atomic.Int64
	recheck  atomic.Bool

	// mu is held for reading by every Publish call and for writing by
	// Close, so that Close waits for batches in flight.
	mu     sync.RWMutex
	closed bool
}

// Config returns the publisher's configuration with defaults applied.
func (p *Publisher) Config() Config { return p.cfg }

// MaxMessageBytes returns the longest body the publisher sends.
func (p *Publisher) MaxMessageBytes() int64 { return p.maxBytes.Load() }

// Publish adds one stream entry per message in one pipeline, and returns one
// error per message: nil once Redis replied with the entry's id. A body over
// MaxMessageBytes fails with ErrTooLarge, Permanent, without being sent;
// every other failure is retryable (see the package doc). Errors caused by
// ctx wrap ctx.Err(). A context cancelled (rather than expired) while the
// batch is on the wire takes effect when the replies arrive or the read
// timeout passes.
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
	if err := ctx.Err(); err != nil {
		return outbox.AllFailed(len(msgs), ctxError(p.cfg.Stream, err))
	}

	p.refreshLimit(ctx)

	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(msgs))
	limit, long := p.maxBytes.Load(), false
	for i := range msgs {
		n := len(msgs[i].Body)
		if int64(n) > limit {
			errs[i] = p.tooLarge(n, limit)
			continue
		}
		long = long || n > minMaxBulk
		args := xaddArgs(p.cfg, &msgs[i]) // a value: go-redis keeps no pointer to it
		cmds[i] = pipe.XAdd(ctx, &args)
	}
	if pipe.Len() > 0 {
		// Exec's error is the first command's; each command has its own.
		_, _ = pipe.Exec(ctx)
	}
	acked, failed := false, false
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		errs[i] = p.classify(ctx, cmd.Err())
		acked = acked || errs[i] == nil
		failed = failed || errs[i] != nil
	}
	if acked {
		p.health.ok()
	}
	if failed && long && p.cfg.MaxMessageBytes == 0 {
		p.recheck.Store(true)
	}
	return errs
}

// xaddArgs returns the XADD that publishes m to cfg's stream: the fields
// event (the body), type, subject (the aggregate id) and id (the event id),
// and the trim, if any.
func xaddArgs(cfg Config, m *outbox.Message) redis.XAddArgs {
	return redis.XAddArgs{
		Stream: cfg.Stream,
		MaxLen: cfg.MaxLen,
		Approx: cfg.MaxLen > 0,
		Values: []any{
			FieldEvent, m.Body,
			FieldType, m.Type,
			FieldSubject, m.AggregateID,
			FieldID, m.ID.String(),
		},
	}
}

// The fields of a stream entry.
const (
	FieldEvent   = "event"
	FieldType    = "type"
	FieldSubject = "subject"
	FieldID      = "id"
)

// Close waits for Publish calls in flight, then closes the connections.
// Publish after Close fails with ErrClosed. Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redisstream: close: %w", err)
	}
	return nil
}
