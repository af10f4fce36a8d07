package webhook

import (
	"context"
	"net/http"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// DeliverTo adapts a handler of message bodies, such as an inbox's Deliver,
// to Receiver.Deliver, so that the Receiver answers 2xx only once handle
// has returned nil: once the consumer's transaction committed. A body that
// handle refuses for good (its error is outbox.Permanent) is answered 400,
// which a Publisher dead-letters at once; any other error is answered 503,
// which it retries, delivering the event again with the same id.
//
//	rc := &webhook.Receiver{Verifier: v, Deliver: webhook.DeliverTo(in.Deliver)}
//
// handle gets the body whatever the Receiver found in it (Delivery.Err): an
// inbox decodes and judges it itself, keying on the event id in the body.
func DeliverTo(handle func(ctx context.Context, body []byte) error) func(ctx context.Context, d broker.Delivery) error {
	return func(ctx context.Context, d broker.Delivery) error {
		err := handle(ctx, d.Body)
		switch {
		case err == nil:
			return nil
		case outbox.IsPermanent(err):
			return &StatusError{StatusCode: http.StatusBadRequest, Body: truncateText(err.Error(), 200)}
		default:
			return &StatusError{StatusCode: http.StatusServiceUnavailable, Body: truncateText(err.Error(), 200)}
		}
	}
}
