// Package redisstream publishes outbox events to a Redis stream.
//
// Every event becomes one entry, added with XADD to the stream Config.Stream
// (by default outbox.events; Herald's orders service uses orders.events),
// with an id Redis assigns and these fields:
//
//	event    the CloudEvents JSON document, byte for byte as the relay
//	         encoded it (structured mode)
//	type     the event type, so a consumer can filter without parsing
//	subject  the aggregate id
//	id       the event id, so a consumer can drop duplicates without parsing
//
// Nothing else is created: XADD creates the stream on its first entry.
// Every connection is named Config.ClientName (by default herald) with
// CLIENT SETNAME, so that an operator finds the publisher in CLIENT LIST.
// With Config.MaxLen set, each XADD also trims the stream to about that many
// entries (MAXLEN ~ N), dropping the oldest; a consumer that falls further
// behind than that loses entries without notice.
//
// # Delivery and ordering
//
// A batch is sent as one pipeline on one connection: every XADD is written,
// then every reply is read, one round trip per batch. Redis applies the
// commands in order, so the entries of a batch appear in batch order, and
// the events of one aggregate, which the relay publishes one batch after
// another, appear in sequence order. A nil result means Redis added the entry
// and replied with its id. Durability is the server's: an entry acknowledged
// by a Redis without AOF (appendfsync always) or replication can be lost in a
// crash.
//
// Delivery is at least once. Redis does not drop duplicates: an entry whose
// reply was lost (the connection broke after Redis applied the XADD) is added
// again when the relay retries it, and a relay that crashed between the
// broker's reply and recording it publishes the event again. A consumer
// dedupes by the id field (the event id, also the CloudEvent's id), which is
// the same for every copy.
//
// # Failures
//
// The publisher retries nothing itself: the relay retries each failed event
// with backoff, so no command is sent twice within one Publish call and only
// the events that failed are sent again. A lost or refused connection, a
// timeout, a server that is loading its data (LOADING), busy with a script
// (BUSY), a replica after a failover (READONLY), out of memory (OOM), or
// refusing the credentials or the command (NOAUTH, WRONGPASS, NOPERM) fails
// the affected messages with a retryable error. The client dials again on
// the next Publish, so no new Publisher is needed once Redis is back (after
// many failed dials go-redis probes the server once a second and fails
// publishes at once meanwhile, so publishing resumes within about a second
// of Redis's return). While Redis is unreachable a Publish fails within one
// dial: at once when the port is closed, after Config.DialTimeout at most
// when the host does not answer, and never later than its context's
// deadline.
//
// A key of the stream's name that holds another type (WRONGTYPE) is a
// configuration error that affects every event alike: Connect refuses it,
// and if the key is replaced later, Publish fails with ErrWrongType, which is
// retryable and wraps outbox.ErrBrokerUnavailable: the relay takes it for an
// outage, charges no attempt and keeps the events until an operator fixes
// the key, rather than dead-lettering all of them at once.
//
// Only a message Redis can never accept fails with an outbox.Permanent
// error: a body longer than the server's proto-max-bulk-len (512 MiB by
// default; Connect reads it with CONFIG GET, or takes Config.MaxMessageBytes),
// which the publisher refuses without sending it (ErrTooLarge), because
// Redis answers such a command by closing the connection, failing the rest
// of the batch with it. Should the server's limit be lowered under a running
// publisher, the batch carrying the long body fails retryably, the publisher
// reads the limit again, and the retry refuses just that body.
//
// Subscribe reads the stream back with XREAD, for herald tail, herald bench
// and tests; it keeps no state in Redis (no consumer group). Services that
// consume the stream for real would use a consumer group (XREADGROUP, XACK)
// of their own, deduping by the id field.
package redisstream
