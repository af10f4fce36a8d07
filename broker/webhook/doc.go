// Package webhook delivers outbox events to an HTTP endpoint, signed as the
// Standard Webhooks specification (www.standardwebhooks.com) prescribes.
//
// # What it sends
//
// Each event is one POST to Config.URL, exactly as configured (its query
// string belongs to the endpoint), whose body is the event's CloudEvents
// JSON document unchanged (structured mode) and whose headers are:
//
//	Content-Type       application/cloudevents+json
//	webhook-id         the event id (a UUID), the same on every retry
//	webhook-timestamp  the attempt's time, Unix seconds
//	webhook-signature  "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))
//	                   for each secret, separated by spaces
//	Idempotency-Key    the event id, quoted
//	traceparent        and tracestate, when the event carries a trace context
//
// There is no topic to name: every event type goes to the one endpoint,
// which routes by the CloudEvent's "type" (or "aggregatetype") in the body.
//
// A secret is "whsec_" + the base64 of a 24- to 64-byte key. Several
// secrets (Herald's HERALD_WEBHOOK_SECRET holds them space-separated) all
// sign every delivery, so that a receiver keeps verifying with the old key
// or the new one while it is rotated.
//
// # Delivery and ordering
//
// The endpoint's 2xx acknowledges an event. Each event is tried once per
// Publish; the relay retries the failed ones later, so delivery is at least
// once: a receiver drops a webhook-id it has already processed. A batch's
// events go out concurrently, at most Config.Concurrency requests in flight
// per Publisher on kept-alive connections, and never two events of one
// aggregate at once: since the relay sends an aggregate's next event only
// after the previous one was acknowledged, an endpoint that processes a
// delivery before answering 2xx sees each aggregate's events in order.
//
// # Failures
//
// A 3xx (redirects are not followed: the specification counts them as
// failures, and following one would post events where nobody configured
// them) and a 4xx other than 408 and 429 are outbox.Permanent: the relay
// dead-letters the event at once. That includes 401 and 403 from an
// endpoint with another secret, and 410 Gone: fix the configuration, then
// replay the dead letters. 408, 429, 5xx, no answer within Config.Timeout
// (ErrTimeout) and connection failures (ErrUnreachable) are retryable; the
// *StatusError carries the endpoint's Retry-After (RetryDelay), which the
// relay may use as a lower bound of its next delay. Publish never sleeps.
//
// # Receiving
//
// A webhook cannot be read back from Herald's side, so there is no
// Subscribe. Verify and Verifier check a delivery's signature and timestamp
// (against replays), and Receiver is an http.Handler that verifies each
// delivery and hands it to a callback as a broker.Delivery: herald bench
// and the tests run one as their endpoint.
//
// Nothing prints a secret: Secret formats as "whsec_[REDACTED]", and errors
// and Config.String show the endpoint as scheme://host only, since webhook
// URLs often carry a token of the endpoint's in the path or query.
package webhook
