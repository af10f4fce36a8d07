// Package outbox is a transactional outbox for Go services: events are
// written in the same database transaction as the change they describe, and
// a relay publishes them to a message broker afterwards, so a change is
// never committed without its events nor an event published for a change
// that rolled back.
//
// # Guarantees
//
//   - Atomic write: events commit or roll back with the caller's transaction.
//   - No loss: every committed event is published at least once, across a
//     relay killed at any moment, a broker outage or a database restart.
//   - Per-aggregate order: the events of one aggregate reach the broker in
//     commit order, also with several relays on one database, each carrying
//     a sequence 1, 2, 3… without gaps among committed events.
//   - No skipped rows: an event whose transaction commits late is still
//     published.
//   - Bounded duplicates: only events in flight during a crash are published
//     twice, with the same id, which brokers and consumers drop.
//   - Atomic dead-lettering: an event that keeps failing moves to the
//     dead-letter queue in one transaction; a replay returns it exactly once.
//   - Poison isolation: a failing event holds back only the later events of
//     its own aggregate, until an operator replays or discards it.
//
// docs/DESIGN.md in the repository explains how each one holds.
//
// # Parts
//
// A Driver stores the outbox: package pgstore for PostgreSQL (pgx) and
// package sqlitestore for SQLite. Its Migrate method creates the outbox's
// tables. A Client enqueues events in the application's transactions. A
// Relay claims events from the driver (its Source side) and hands them to a
// Publisher: the packages under broker/ (natsjs for NATS JetStream, kafka,
// rabbitmq, redisstream for Redis Streams, webhook for signed HTTP POSTs,
// logpub for standard output), or any type with the two methods. Operator
// tools use the driver's Admin side: the dead-letter queue and the backlog's
// figures.
//
// Each outbox has a name, from which its tables are named (see Names): a
// service can keep several outboxes in one database, one per bounded
// context, and they never see each other's events.
//
// # Writing events cheaply
//
// Client.WithTx runs the application's change and its events in one
// transaction and wakes the relays after the commit. An application that
// holds a row lock on its aggregate anyway (it updates the aggregate's row)
// numbers the events itself with Event.Sequence, from a version column of
// that row: the enqueue is then one INSERT, as cheap as writing the row by
// hand. Left zero, Sequence is taken from a counter row per aggregate, which
// needs no lock of the caller's but costs a second row write.
//
// # Tracing
//
// An event's Headers may carry the W3C "traceparent" and "tracestate" of
// the request that wrote it (see SpanContext); the relay passes them on as
// the CloudEvents extensions of the same names. With RelayConfig.Tracer set,
// each batch's publish is a span linked to those writers' spans. A consumer
// continues the trace with TraceContext on the CloudEvent it received. The
// package reads no OpenTelemetry global.
package outbox
