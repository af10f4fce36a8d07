// Package broker holds what Herald's broker adapters share. Each adapter
// lives in a subpackage named after its broker (natsjs, kafka, rabbitmq,
// redisstream, webhook, logpub), implements outbox.Publisher and passes the
// suite in package outbox/publishertest. Every broker carries the same
// CloudEvents JSON document (outbox.EncodeCloudEvent), so one consumer
// parser, outbox.ParseCloudEvent, reads them all.
//
// The adapters whose broker can be read back also offer a Subscribe
// function that delivers Delivery values, for herald tail, herald bench and
// tests.
package broker

import (
	"time"

	"github.com/heraldhq/herald/outbox"
)

// Delivery is one event read back from a broker.
type Delivery struct {
	// Event is the parsed body; zero when Err is set.
	Event outbox.CloudEvent
	// Err says why Body is not a valid CloudEvent of the outbox
	// (outbox.ParseCloudEvent).
	Err  error
	Body []byte
	// Where is where the broker put it, in the broker's own terms: a
	// subject, a topic/partition@offset, a routing key, a stream entry id.
	Where string
	// MsgID is the broker's own message id (Nats-Msg-Id, AMQP message-id,
	// webhook-id) when it has one: the event id. Empty otherwise.
	MsgID string
	// Stored is when the broker stored the message, if it says; otherwise
	// when the subscriber received it.
	Stored time.Time
}

// SubscribeOptions choose what a subscription reads.
type SubscribeOptions struct {
	// FromStart reads everything the broker still holds; otherwise only
	// what is published after Subscribe returns.
	FromStart bool
	// Types restricts the subscription to these event types; empty reads
	// all of them.
	Types []string
}

// Wants reports whether opts select events of type eventType.
func (o SubscribeOptions) Wants(eventType string) bool {
	if len(o.Types) == 0 {
		return true
	}
	for _, t := range o.Types {
		if t == eventType {
			return true
		}
	}
	return false
}
