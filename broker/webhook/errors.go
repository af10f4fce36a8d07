package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// Errors of Publish, compared with errors.Is. None is outbox.Permanent:
// each is about the endpoint or the connection, not the event, and may
// clear by itself.
var (
	// ErrClosed fails the messages published after Close.
	ErrClosed = errors.New("webhook: publisher closed")
	// ErrTimeout: the endpoint did not answer within Config.Timeout.
	ErrTimeout = errors.New("webhook: endpoint did not answer in time")
	// ErrUnreachable: no connection (refused, reset, DNS, TLS) or it broke
	// before the answer. It wraps outbox.ErrBrokerUnavailable: the relay
	// takes it for an outage of the endpoint, not a failure of the event,
	// and charges no attempt.
	ErrUnreachable = fmt.Errorf("webhook: endpoint unreachable (%w)", outbox.ErrBrokerUnavailable)
	// ErrConnectionBroken: the connection broke after the request was
	// sent, with no answer. Retryable, and charged as the event's attempt:
	// the endpoint may be failing on this very event.
	ErrConnectionBroken = errors.New("webhook: the connection broke before the endpoint answered")
	// ErrHeldBack fails an event that was not sent because an earlier event
	// of its aggregate in the same batch failed: sending it would overtake
	// that one.
	ErrHeldBack = errors.New("webhook: held back behind a failed event of the same aggregate")
)

// StatusError is a non-2xx answer of the endpoint. Publish returns it
// wrapped with outbox.Permanent for 3xx and for 4xx other than 408 and 429;
// for those two and 5xx it is retryable, and RetryAfter carries the
// endpoint's Retry-After.
//
// A receiver's callback (see Receiver) returns a StatusError to answer with
// that status (and Retry-After); any other error answers 500.
type StatusError struct {
	StatusCode int
	// RetryAfter is the endpoint's Retry-After (seconds, or an HTTP date
	// counted from the answer), zero when absent or unreadable. The relay
	// owns retry delays: Publish never waits for it. A relay honours it by
	// retrying no sooner, e.g. Delay = max(policy delay, RetryDelay(err)).
	RetryAfter time.Duration
	// Body is the start of the answer's body, for the dead-letter reason.
	Body string
	// Location is a redirect's target; redirects are never followed.
	Location string
}

func (e *StatusError) Error() string {
	var b strings.Builder
	b.WriteString("status ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" " + text)
	}
	if e.Location != "" {
		b.WriteString(" to " + e.Location + " (redirects are not followed; configure the new URL)")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Body != "" {
		b.WriteString(": " + e.Body)
	}
	return b.String()
}

// Transient reports whether a retry may succeed: 408, 429 and 5xx.
func (e *StatusError) Transient() bool { return transientStatus(e.StatusCode) }

// RetryDelay returns RetryAfter. A relay can find it behind any wrapping
// without importing this package:
//
//	var ra interface{ RetryDelay() time.Duration }
//	if errors.As(err, &ra) { delay = max(delay, ra.RetryDelay()) }
func (e *StatusError) RetryDelay() time.Duration { return e.RetryAfter }

// RetryDelay returns the Retry-After the endpoint sent with the failure err,
// zero if none.
func RetryDelay(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

func transientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP date
// (RFC 9110, 10.2.3), relative to now; zero when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second)
	}
	return 0
}
