// Package inbox is the consumer's side of the transactional outbox: it runs
// a consumer's handler at most once per event and, per aggregate, in the
// order the producer committed the events, inside the consumer's own
// database transaction.
//
// Brokers deliver at least once, and not always in order: a relay that
// crashed publishes again, a replayed dead letter arrives after its
// successors, a consumer reading two partitions interleaves them. Every
// event an outbox publishes carries a unique id and its aggregate's
// sequence (1, 2, 3… without gaps), and the inbox uses both. In the
// consumer's transaction, Handle
//
//   - skips an event whose id it has seen (Duplicate);
//   - runs the handler on the aggregate's next event (sequence = last
//     applied + 1), then on every held successor that now follows without
//     a gap, in order (Applied);
//   - stores an event that comes before its predecessors, to run it when
//     they have been applied (Held);
//   - refuses an event whose sequence was applied already under another id
//     (Repeated), which it logs and counts.
//
// Whatever the outcome, the consumer commits and acknowledges the message.
// A handler error rolls everything of the event back, its id record
// included, and the broker delivers it again. Because the id record, the
// sequence and the handler's writes commit together, a consumer killed at
// any moment neither loses nor repeats an effect.
//
// # Parts
//
// A Driver stores the inbox: package pginbox for PostgreSQL (pgx) and
// package sqliteinbox for SQLite, each with a Migrate method. New makes an
// Inbox of a driver and a handler. Handle works in a transaction the
// consumer opened; Process opens one itself; Deliver decodes a message body
// first, for the broker consumers, which acknowledge a message only after
// its transaction committed: natsjs.Consume (a durable JetStream consumer),
// kafka.Consume (a consumer-group member committing offsets),
// rabbitmq.Consume (manual acknowledgements), redisstream.Consume (a
// consumer group with XACK) and webhook.DeliverTo (a Receiver that answers
// 2xx once the inbox committed). Subscribe to every event of the aggregates
// you follow: the sequence counts them all, and a missing one holds the
// aggregate's later events back.
//
// HandleBatch, ProcessBatch and DeliverBatch take a batch of events in one
// transaction, as if one by one in aggregate and sequence order, so that
// one commit covers them all; a handler error fails its event only (the
// batch is taken again without it). pginbox admits a whole batch in one
// round trip (BatchDriver). natsjs.ConsumeBatch and kafka.ConsumeBatch hand
// the broker's messages over in batches.
//
// Gaps lists the aggregates whose held events have waited longer than a
// threshold: a missing event that may never come (its dead letter was
// discarded upstream). SkipGap moves such an aggregate on. Prune deletes id
// records by age, in small batches; a redelivery older than that is still
// caught by its sequence. NewMetrics and NewGapCollector expose all of it to
// Prometheus. docs/inbox.md in the repository explains the rules.
package inbox
