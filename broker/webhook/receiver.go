package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// DefaultMaxBodyBytes bounds a delivery's body at a Receiver.
const DefaultMaxBodyBytes = 4 << 20

// Receiver is an http.Handler that accepts the deliveries of a Publisher:
// the receiving end for tests and herald bench, and a starting point for a
// consumer. A webhook cannot be read back from Herald's side, so this
// package has no Subscribe; run a Receiver instead.
//
// It answers 405 to anything but POST, 413 to a body over MaxBodyBytes and
// 401 to a delivery that fails Verify (a Publisher dead-letters the event
// on these: a wrong secret is fixed by configuration, then the events are
// replayed). Otherwise it calls Deliver and answers 204 when it returns
// nil, the status of a *StatusError it returns (with its Retry-After), or
// 500 for any other error.
type Receiver struct {
	// Verifier checks each delivery's signature and timestamp. Required.
	Verifier *Verifier
	// Deliver receives every verified delivery, concurrently as requests
	// arrive. Event is set when the body is a valid outbox CloudEvent whose
	// id is the webhook-id; otherwise Err says why, and Deliver decides the
	// answer (a &StatusError{StatusCode: 400} dead-letters the event).
	// MsgID is the webhook-id, Where the request's path, Stored the time
	// of receipt. A consumer drops a delivery whose MsgID it has already
	// processed: deliveries are at least once.
	Deliver func(ctx context.Context, d broker.Delivery) error
	// MaxBodyBytes bounds a body; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "webhook: POST only", http.StatusMethodNotAllowed)
		return
	}
	limit := rc.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("webhook: body over %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "webhook: reading the body failed", http.StatusBadRequest)
		return
	}
	if rc.Verifier == nil {
		http.Error(w, "webhook: receiver has no verifier", http.StatusInternalServerError)
		return
	}
	if err := rc.Verifier.Verify(r.Header, body); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	d := broker.Delivery{Body: body, MsgID: header(r.Header, HeaderID), Where: r.URL.Path, Stored: time.Now()}
	d.Event, d.Err = outbox.ParseCloudEvent(body)
	if d.Err == nil && d.Event.ID != d.MsgID {
		d.Event, d.Err = outbox.CloudEvent{}, fmt.Errorf("webhook: webhook-id %q is not the event id %q", truncateText(d.MsgID, 64), truncateText(d.Event.ID, 64))
	}
	if rc.Deliver != nil {
		err = rc.Deliver(r.Context(), d)
	}
	var se *StatusError
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.As(err, &se):
		if se.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((se.RetryAfter+time.Second-1)/time.Second), 10))
		}
		code := se.StatusCode
		if code < 200 || code > 599 {
			code = http.StatusInternalServerError
		}
		http.Error(w, err.Error(), code)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
