package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/outbox"
)

var (
	// ErrClosed is returned for messages published after Close.
	ErrClosed = errors.New("redisstream: publisher closed")
	// ErrTooLarge is returned, wrapped with outbox.Permanent, for a body
	// longer than the server accepts (its proto-max-bulk-len, or
	// Config.MaxMessageBytes).
	ErrTooLarge = errors.New("redisstream: message larger than Redis accepts")
	// ErrWrongType means that the stream's key holds another type. Connect
	// refuses it; Publish returns it retryable (see the package doc).
	ErrWrongType = fmt.Errorf("redisstream: the stream's key holds another type (WRONGTYPE) (%w)", outbox.ErrBrokerUnavailable)
	// ErrUnavailable wraps a failure to reach Redis or a connection lost
	// before a reply arrived: the entry may or may not have been added.
	ErrUnavailable = fmt.Errorf("redisstream: Redis unavailable (%w)", outbox.ErrBrokerUnavailable)
)

// classify turns the outcome of one XADD into the message's result: nil,
// a retryable error, or Permanent for what no retry can fix.
func (p *Publisher) classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return p.replyError(reply, err)
	}
	// No reply: the command was not sent, or its reply was lost.
	if cerr := ctxCause(ctx); cerr != nil {
		return fmt.Errorf("redisstream: XADD %s: %w (%v)", p.cfg.Stream, cerr, err) //nolint:errorlint // wraps only our ctx's cause: the XADD error may be another call's cancellation or a timeout, not ours to claim
	}
	p.health.fail("unavailable", err)
	return fmt.Errorf("%w at %s: %w", ErrUnavailable, p.cfg.Addr, err)
}

// replyError classifies an error reply by its code, the first word of the
// reply, which is what Redis defines as the error's kind.
//
// Every field of an entry is a binary-safe string, so no content of a valid
// event makes Redis refuse an XADD, except its size; an oversized argument
// is normally refused before it is sent (ErrTooLarge), and this reply is
// what a server with a lower limit than the one Connect saw answers.
// Everything else fails every message alike and is either passing (LOADING,
// BUSY, READONLY during a failover, OOM, MASTERDOWN, TRYAGAIN) or a
// configuration error (WRONGTYPE, NOAUTH, WRONGPASS, NOPERM, an unknown
// command on a server without streams): all retryable, so that the relay
// keeps the events until Redis or its operator recovers instead of
// dead-lettering all of them.
func (p *Publisher) replyError(reply redis.Error, err error) error {
	msg := reply.Error()
	code, _, _ := strings.Cut(msg, " ")
	switch {
	case code == "ERR" && strings.Contains(msg, "invalid bulk length"):
		return outbox.Permanent(fmt.Errorf("%w: %w", ErrTooLarge, err))
	case code == "WRONGTYPE":
		p.health.fail(code, err)
		return fmt.Errorf("%w: key %q: %w", ErrWrongType, p.cfg.Stream, err)
	default:
		p.health.fail(code, err)
		return fmt.Errorf("redisstream: XADD %s: %w", p.cfg.Stream, err)
	}
}

// tooLarge is the result of a body over the publisher's limit.
func (p *Publisher) tooLarge(n int, limit int64) error {
	return outbox.Permanent(fmt.Errorf("%w: body of %d bytes, limit %d", ErrTooLarge, n, limit))
}

// ctxCause returns ctx's error, or DeadlineExceeded once its deadline has
// passed even if ctx has not noticed yet: the connection's deadline, which
// go-redis sets to ctx's, can fire first.
func ctxCause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func ctxError(stream string, err error) error {
	return fmt.Errorf("redisstream: XADD %s: %w", stream, err)
}
