package rabbitmq

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/outbox"
)

// Publish sends the batch on one confirm-mode channel, every message
// written back to back, then awaits all the confirms: one round trip per
// batch. It returns one error per message: nil once the broker has
// confirmed it (basic.ack) without returning it.
//
// Only messages that can never be accepted fail with outbox.Permanent: an
// event type that is no routing key, a body over the broker's
// max_message_size (or Config.MaxMessageSize), and, with UnroutablePermanent,
// an unroutable message. Everything else is retryable: a nack, a return
// under UnroutableRetry, the channel or connection closing, no connection
// (ErrNotConnected, at once), a blocked broker (ErrBlocked, at once), the
// confirm timeout. When ctx ends, every message not yet confirmed fails
// with an error wrapping ctx.Err(); a write still stuck 2s after ctx ended
// (the broker stopped reading the socket: a resource alarm) gets the
// connection closed under it, and the publisher reconnects.
//
// A broker closes the channel over a message above its max_message_size,
// dropping the messages after it unread: that message fails for good, the
// ones after it are sent again on a new channel within this call, and the
// publisher refuses larger messages itself from then on. The messages
// before it that the broker had not confirmed yet fail retryably, since
// they may have been routed.
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
		return outbox.AllFailed(len(msgs), ctxError(err))
	}
	s := p.sess.Load()
	switch {
	case s == nil:
		return outbox.AllFailed(len(msgs), p.notConnected())
	case s.blocked.Load():
		return outbox.AllFailed(len(msgs), ErrBlocked)
	}
	if p.redeclare.Load() {
		p.redeclareExchange(s)
	}
	pending := make([]int, len(msgs))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		pending = p.round(ctx, s, msgs, pending, errs)
	}
	return errs
}

// round publishes msgs[idx...] on one channel and fills in their errors.
// It returns the messages to send again: those the broker dropped unread
// after closing the channel over a message too large (never one of them).
func (p *Publisher) round(ctx context.Context, s *session, msgs []outbox.Message, idx []int, errs []error) (again []int) {
	pc, err := s.channel()
	if err != nil {
		err = mask(fmt.Errorf("rabbitmq: open a channel: %w", err), p.password)
		for _, i := range idx {
			errs[i] = err
		}
		return nil
	}

	// Send everything.
	mandatory := p.cfg.Unroutable != UnroutableDrop
	sent := make([]int, 0, len(idx)) // message indexes, in the order sent
	dcs := make([]*amqp.DeferredConfirmation, 0, len(idx))
	var unsent []int // not sent, because of sendErr
	var sendErr error
	sendCtx := false // sendErr is ctx's
	guard, stopGuard := guardWrites(ctx, func() {
		p.log.Warn("rabbitmq: a write outlived its batch's context; closing the connection")
		_ = s.conn.CloseDeadline(time.Now())
	})
	for k, i := range idx {
		if errs[i] = p.check(&msgs[i]); errs[i] != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			sendErr, unsent, sendCtx = ctxError(err), idx[k:], true
			break
		}
		guard.begin()
		dc, err := pc.ch.PublishWithDeferredConfirm(p.cfg.Exchange, msgs[i].Type, mandatory, false, publishing(&msgs[i]))
		guard.end()
		if err != nil {
			sendErr, unsent = err, idx[k:]
			break
		}
		sent = append(sent, i)
		dcs = append(dcs, dc)
	}
	stopGuard()

	// Await the confirms, and collect the returns that precede them.
	returned := make(map[string]amqp.Return)
	settled, waitErr := p.await(ctx, pc, dcs, returned)

	var cause *amqp.Error
	select {
	case cause = <-pc.closes:
	default:
	}
	closed := pc.ch.IsClosed()
	switch {
	case closed:
	case waitErr == nil && sendErr == nil:
		p.release(s, pc)
	default:
		p.discard(pc)
	}

	// culprit is the message the broker closed the channel over, if it
	// did so over a message too large.
	culprit := -1
	if limit, ok := refusedSize(cause); ok {
		p.learn(limit)
		for k, i := range sent {
			if !dcs[k].Acked() && len(msgs[i].Body) > limit {
				culprit = k
				errs[i] = outbox.Permanent(fmt.Errorf("%w: %d bytes, over the broker's max_message_size of %d (%w)",
					ErrTooLarge, len(msgs[i].Body), limit, cause))
				break
			}
		}
	}
	for k, i := range sent {
		switch {
		case k == culprit:
		case culprit >= 0 && k > culprit && !dcs[k].Acked():
			again = append(again, i)
		case !settled[k]:
			errs[i] = waitErr
		default:
			errs[i] = p.result(&msgs[i], dcs[k].Acked(), returned, closed, cause)
		}
	}
	for _, i := range unsent {
		if errs[i] = p.check(&msgs[i]); errs[i] != nil {
			continue
		}
		switch {
		case sendCtx:
			errs[i] = sendErr
		case culprit >= 0:
			again = append(again, i)
		case closed:
			errs[i] = closeError(cause)
		default:
			errs[i] = mask(fmt.Errorf("rabbitmq: publish: %w", sendErr), p.password)
		}
	}
	if guard.fired.Load() {
		// The connection was closed because of ctx: say so.
		stuck := fmt.Errorf("%w (a write outlived it; the connection was closed)", ctxError(ctx.Err()))
		for _, i := range idx {
			if errs[i] != nil && !outbox.IsPermanent(errs[i]) {
				errs[i] = stuck
			}
		}
	}
	if cause != nil && cause.Code == amqp.NotFound {
		p.redeclare.Store(true) // the exchange is gone
	}
	return again
}

// redeclareExchange declares the exchange again after the broker reported
// it missing.
func (p *Publisher) redeclareExchange(s *session) {
	if err := declare(s.conn, p.cfg); err != nil {
		p.log.Warn("rabbitmq: declare the exchange again", "err", mask(err, p.password))
		return
	}
	p.redeclare.Store(false)
	p.log.Info("rabbitmq: declared the missing exchange again")
}
