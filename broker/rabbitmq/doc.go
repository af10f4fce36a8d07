// Package rabbitmq publishes outbox events to RabbitMQ (AMQP 0-9-1, with
// github.com/rabbitmq/amqp091-go).
//
// # Where events go
//
// Every event is published to one durable topic exchange, Config.Exchange
// (by default outbox.events; Herald's orders service uses orders.events),
// which Connect declares, with the event type as routing key
// (order.status_changed). Consumers bind their queues to the exchange with
// the types they want, or "#" for all. Config.Queue, when set, is a durable
// queue Connect declares and binds with "#", so that events are kept from
// the first publish on, before any consumer exists. Each message carries:
//
//	body           the event's CloudEvents JSON document, as the relay
//	               encoded it (structured mode)
//	message_id     the event id
//	type           the event type
//	content_type   application/cloudevents+json
//	delivery_mode  2 (persistent: a durable queue keeps it across a broker
//	               restart)
//	timestamp      the event's creation time (second precision)
//	headers        traceparent and tracestate, when the event has them
//
// # Delivery
//
// A batch goes out on one channel in confirm mode, each message written
// back to back with the mandatory flag, and the confirms are awaited
// together: one round trip per batch. A message is acknowledged to the
// relay once the broker confirmed it and did not return it, that is, once
// every queue it was routed to has taken it (a durable queue: written it to
// disk). Delivery is at least once: a message whose confirm was lost with
// the connection is published again with the same message_id, so consumers
// dedupe by message_id (the CloudEvents id). RabbitMQ itself drops no
// duplicates.
//
// Ordering: the events of one aggregate are published one batch after
// another (the relay never has two in flight), so each queue receives them
// in order; the events of different aggregates in one batch are unordered
// with respect to each other.
//
// # Failures
//
// Errors are retryable, except those marked outbox.Permanent (the relay
// dead-letters the event at once): an event type that is no routing key
// (empty, over 255 bytes), a body over the broker's max_message_size (or
// Config.MaxMessageSize), and, with UnroutablePermanent, an event no queue
// is bound for. By default an unroutable event (the broker returns it)
// fails retryably, so that it is not dead-lettered because a consumer has
// not declared its queue yet; see Unroutable for the choices. A nack, the
// channel or connection closing, the confirm timeout and the broker's
// resource alarms are retryable. When the connection is lost the
// publisher reconnects with backoff by itself; meanwhile Publish fails at
// once with ErrNotConnected.
//
// Subscribe reads the exchange back, for herald tail, herald bench and
// tests.
package rabbitmq
