package rabbitmq

import (
	"fmt"

	"github.com/heraldhq/herald/outbox"
)

// check refuses, for good, a message the broker can never accept.
func (p *Publisher) check(m *outbox.Message) error {
	switch {
	case m.Type == "":
		return outbox.Permanent(fmt.Errorf("%w: empty event type", ErrInvalidRoutingKey))
	case len(m.Type) > maxShortStr:
		return outbox.Permanent(fmt.Errorf("%w: event type of %d bytes, over AMQP's %d", ErrInvalidRoutingKey, len(m.Type), maxShortStr))
	}
	if limit := p.maxMessageSize(); limit > 0 && len(m.Body) > limit {
		return outbox.Permanent(fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTooLarge, len(m.Body), limit))
	}
	return nil
}

// maxMessageSize is the body size limit known before sending: the
// configured one or the broker's as it reported it, whichever is lower;
// zero when there is none.
func (p *Publisher) maxMessageSize() int {
	limit, learned := p.cfg.MaxMessageSize, int(p.learned.Load())
	if limit == 0 || learned > 0 && learned < limit {
		return learned
	}
	return limit
}

// learn records the limit the broker reported when it refused a message.
func (p *Publisher) learn(limit int) {
	for {
		old := p.learned.Load()
		if old > 0 && old <= int64(limit) {
			return
		}
		if p.learned.CompareAndSwap(old, int64(limit)) {
			p.log.Warn("rabbitmq: the broker refused a message over its max_message_size; larger messages now fail at once",
				"max_message_size", limit)
			return
		}
	}
}
