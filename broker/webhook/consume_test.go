package webhook_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/inbox"
	"github.com/heraldhq/herald/inbox/inboxtest"
	"github.com/heraldhq/herald/outbox"
)

// A Receiver answering through DeliverTo feeds an inbox: every event
// applied once and in order; a delivery whose handler failed is answered
// 503 and sent again, an invalid body is answered 400 and dead-lettered by
// the publisher, not sent again.
func TestDeliverToInbox(t *testing.T) {
	t.Parallel()
	_, key := newSecret(t)
	v, err := webhook.NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	var url string
	inboxtest.RunConsumer(t, inboxtest.Broker{
		Push:    true,
		Invalid: true,
		Start: func(t *testing.T, _ string, handle func(context.Context, []byte) error) func() {
			srv := httptest.NewServer(&webhook.Receiver{Verifier: v, Deliver: webhook.DeliverTo(handle)})
			url = srv.URL
			return srv.Close
		},
		// Publish plays the relay: it sends each body and sends again what
		// failed, until every one is accepted or refused for good.
		Publish: func(t *testing.T, bodies [][]byte) {
			p, err := webhook.New(webhook.Config{URL: url + "/in", Secrets: []webhook.Secret{key}})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = p.Close() }()
			pending := make([]outbox.Message, len(bodies))
			for i, b := range bodies {
				pending[i] = message(b)
			}
			for len(pending) > 0 {
				var again []outbox.Message
				for i, err := range p.Publish(testCtx(t), pending) {
					if err != nil && !outbox.IsPermanent(err) {
						again = append(again, pending[i])
					}
				}
				pending = again
			}
		},
	})
}

// message is the outbox message whose CloudEvents document is body, as a
// relay hands it to a publisher: its id is the webhook-id.
func message(body []byte) outbox.Message {
	m := outbox.Message{Body: body}
	if ev, err := inbox.Decode(body); err == nil {
		m.ID, _ = uuid.Parse(ev.ID)
		m.Type, m.AggregateType, m.AggregateID, m.Sequence = ev.Type, ev.AggregateType, ev.Subject, ev.Sequence
	} else {
		m.ID, m.Type = uuid.New(), "invalid"
	}
	return m
}
