package rabbitmq

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/outbox"
)

// await waits for the confirms of dcs and gathers the returns the broker
// sent meanwhile into returned, keyed by message id. It stops early when
// ctx ends or the confirm timeout passes, and says why. settled[k] reports
// whether dcs[k] was confirmed (or nacked) before the returns were last
// collected: only for those are the returns complete.
func (p *Publisher) await(ctx context.Context, pc *pubChannel, dcs []*amqp.DeferredConfirmation,
	returned map[string]amqp.Return) (settled []bool, stopped error) {
	timeout := time.NewTimer(p.cfg.ConfirmTimeout)
	defer timeout.Stop()
	returns := pc.returns
confirms:
	for _, dc := range dcs {
		for {
			select {
			case <-dc.Done():
				continue confirms
			case r, ok := <-returns:
				if !ok {
					returns = nil
					continue
				}
				returned[r.MessageId] = r
			case <-ctx.Done():
				stopped = ctxError(ctx.Err())
				break confirms
			case <-timeout.C:
				stopped = fmt.Errorf("%w (%s)", ErrConfirmTimeout, p.cfg.ConfirmTimeout)
				break confirms
			}
		}
	}
	settled = make([]bool, len(dcs))
	for k, dc := range dcs {
		select {
		case <-dc.Done():
			settled[k] = true
		default:
		}
	}
	// The broker sends a message's return before its confirm, and the
	// client hands the return over before it settles the confirm: the
	// returns of every message settled above are in the buffer now.
	for returns != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				break
			}
			returned[r.MessageId] = r
		default:
			returns = nil
		}
	}
	return settled, stopped
}

// result is the outcome of one settled message.
func (p *Publisher) result(m *outbox.Message, acked bool, returned map[string]amqp.Return, closed bool, cause *amqp.Error) error {
	if r, ok := returned[m.ID.String()]; ok {
		err := fmt.Errorf("%w: exchange %s, routing key %q (%d %s)", ErrUnroutable, p.cfg.Exchange, m.Type, r.ReplyCode, r.ReplyText)
		if p.cfg.Unroutable == UnroutablePermanent {
			return outbox.Permanent(err)
		}
		return err
	}
	switch {
	case acked:
		return nil
	case closed:
		return closeError(cause)
	default:
		return fmt.Errorf("%w (exchange %s, routing key %q)", ErrNacked, p.cfg.Exchange, m.Type)
	}
}
