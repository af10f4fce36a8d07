package rabbitmq

import (
	amqp "github.com/rabbitmq/amqp091-go"
)

// maxIdleChannels bounds the confirm channels a connection keeps between
// batches: one per concurrent Publish call is all that is ever used.
// returnBuffer is room for the broker's returns between two reads.
const (
	maxIdleChannels = 16
	returnBuffer    = 256
)

// pubChannel is a channel in confirm mode that carries one batch at a time,
// so that every return the broker sends on it belongs to that batch.
type pubChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	closes  chan *amqp.Error
}

// channel takes an idle channel of s, or opens one.
func (s *session) channel() (*pubChannel, error) {
	for {
		select {
		case pc := <-s.idle:
			if pc.ch.IsClosed() {
				continue
			}
			return pc, nil
		default:
			return s.openChannel()
		}
	}
}

func (s *session) openChannel() (*pubChannel, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	return &pubChannel{
		ch:      ch,
		returns: ch.NotifyReturn(make(chan amqp.Return, returnBuffer)),
		closes:  ch.NotifyClose(make(chan *amqp.Error, 1)),
	}, nil
}

// release gives back a channel whose batch is fully confirmed.
func (p *Publisher) release(s *session, pc *pubChannel) {
	select {
	case s.idle <- pc:
	default:
		p.discard(pc)
	}
}

// discard closes a channel in the background: one whose batch was
// abandoned (its context ended) may still receive confirms and returns.
func (p *Publisher) discard(pc *pubChannel) {
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		// The client's reader waits on every return it hands over; keep
		// taking them until the channel is closed.
		for range pc.returns {
		}
	}()
	go func() {
		defer p.wg.Done()
		_ = pc.ch.Close()
	}()
}
