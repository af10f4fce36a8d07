package webhook_test

import (
	"net/http"
	"testing"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// poisonType is an event type the test endpoint refuses with 400.
const poisonType = "test.poison"

// TestConformance runs the suite against an endpoint of each instance's
// own, which verifies every delivery independently and answers 400 to
// poisonType.
//
// Features: a webhook keeps nothing for a later consumer (Persistent: the
// endpoint's own business) and drops no duplicate by itself (Dedup: the
// receiver dedupes by webhook-id). Disconnect is nil: there is no lasting
// connection to lose, each delivery stands alone, and a kept-alive
// connection the endpoint closes is replaced by the transport on the next
// request; TestEndpointClosesConnections and TestEndpointDownThenUp cover
// what the suite's reconnect test would.
func TestConformance(t *testing.T) {
	t.Parallel()
	publishertest.Run(t, publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			ep, secrets := newEndpoint(t, 2)
			ep.respond = func(_ http.ResponseWriter, _ *http.Request, ce outbox.CloudEvent) int {
				if ce.Type == poisonType {
					return http.StatusBadRequest
				}
				return http.StatusOK
			}
			return publishertest.Instance{
				Publisher: newPublisher(t, ep, secrets, webhookConfig()),
				Consume:   ep.consume,
				Poison:    poison,
			}
		},
		Features: publishertest.Features{Persistent: false, Dedup: false},
	})
}

// poison gives m the type the endpoint refuses, re-encoding its body.
func poison(m *outbox.Message) {
	m.Type = poisonType
	body, err := outbox.EncodeCloudEvent(&m.Record, outbox.DefaultSource)
	if err != nil {
		panic(err)
	}
	m.Body = body
}
