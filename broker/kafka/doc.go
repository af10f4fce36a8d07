// Package kafka publishes outbox events to an Apache Kafka topic, with
// franz-go (github.com/twmb/franz-go).
//
// # What goes where
//
// Every event goes to one topic, Config.Topic (by default outbox.events;
// Herald's orders service uses orders.events), created with 3 partitions
// and the broker's default replication factor when it is missing, unless
// NoCreateTopic. Each record is:
//
//	key           the aggregate id: one aggregate's events share a partition
//	value         the CloudEvents JSON document exactly as the relay encoded
//	              it (structured mode), never re-encoded
//	content-type  application/cloudevents+json
//	ce_id         the event id, to drop duplicates without parsing the value
//	ce_type       the event type, to filter without parsing the value
//	traceparent   and tracestate, when the event carries a trace context
//
// The key is hashed as Kafka's Java client does (murmur2), so other
// producers and consumers agree on an aggregate's partition.
//
// # Delivery and order
//
// The producer is idempotent and waits for every in-sync replica
// (acks=all): a record is reported published only once Kafka has it
// committed, and the client's own retries (a leader moved, a connection
// lost mid-request) never write it twice nor out of order. A batch is
// handed to the client at once and its acks are awaited together: its
// records travel in a produce request or two per broker, not one per
// record. The events of one
// aggregate keep their order, since they share a partition and the relay
// gives them in order (see Runs); events of different aggregates have no
// order between them.
//
// # Runs
//
// The Publisher is an outbox.RunPublisher (KeepsRuns is true): the relay
// may give Publish several consecutive events of one aggregate. They share
// a partition, so the idempotent producer writes them in order, one
// producer sequence after another. Once one of them fails, none of the
// later ones is stored, and each is reported with outbox.ErrRunBroken:
//
//   - Each call produces on a client of its own that sends only when
//     flushed, and flushes only once every record of the call is buffered
//     in its partition or failed. When the broker refuses a batch, franz-go
//     fails every later record it holds for that partition, and the broker
//     refuses the later batches already sent, whose sequence numbers no
//     longer follow on. Had the call still been producing, the client would
//     have sent the records produced after the failure under a new epoch.
//   - A record the client refuses before sending (over the topic's
//     max.message.bytes) fails alone in franz-go, which would send the rest
//     of its run: every buffered record is then aborted unsent and the call
//     produced again without the aggregate's later events.
//   - A record refused with its batch and tried again alone (see Failures)
//     is tried in the call's order; its aggregate's later records are not
//     tried once one fails.
//
// A record whose wait was given up (the context ended, no broker answers)
// keeps that error, not ErrRunBroken: it may still be stored, after its
// predecessors, never before.
//
// Delivery is at least once. The idempotent producer drops only the
// retries of its own session, not a relay's republish of an event (after
// a crash, or after Publish gave up waiting): a consumer drops duplicates
// by the event id, the ce_id header or the document's id.
//
// # Failures
//
// A record Kafka will never take fails with an outbox.Permanent error and
// the relay dead-letters its event at once: one over the topic's
// max.message.bytes (refused by the client before it is sent, since the
// client sizes its batches by the topic's limit), one the broker refuses as
// invalid, a topic this client may not write, a topic missing under
// NoCreateTopic. Kafka refuses a batch whole, so a record refused with its
// batch is tried again alone, on a client of its own, before it is called
// permanent: a poison event never takes its batch-mates down with it.
//
// Everything else is retryable: the relay tries again later. franz-go
// retries lost connections and moved leaders by itself within the call.
// When every broker is unreachable, Publish fails at once with
// ErrUnreachable instead of waiting out its context, and succeeds again
// once a broker answers, without a new Publisher. When the context ends,
// the records not yet acknowledged fail with an error wrapping ctx.Err();
// one already on the wire is still awaited by the client in the
// background (the idempotent producer may not drop it), and may be written
// after all: a duplicate for the consumer to drop, never a record reported
// published that was not. A topic deleted under a running publisher is
// created again (or, under NoCreateTopic, fails permanently).
//
// Subscribe reads the topic back, for herald tail, herald bench and tests.
//
// The package's tests and benchmark run against kfake, franz-go's
// in-process fake Kafka: its figures measure this client's side, not
// Kafka's.
package kafka
