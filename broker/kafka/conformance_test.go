package kafka_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// poisonLimit is the max.message.bytes of the conformance topics: poison
// makes a message larger.
const poisonLimit = 64 << 10

// harness runs the conformance suite, each instance on a cluster of its
// own (Disconnect restarts it) and a topic created beforehand with a
// max.message.bytes of poisonLimit.
func harness() publishertest.Harness {
	return publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			c := startCluster(t)
			cfg := config(c)
			if err := c.CreateTopic(cfg.Topic, 3, map[string]string{"max.message.bytes": "65536"}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.DeleteTopic(cfg.Topic) })
			p, err := kafka.Connect(testCtx(t), cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			return publishertest.Instance{
				Publisher: p,
				Poison:    poison,
				Consume: func(t *testing.T) <-chan publishertest.Received {
					return subscribeInto(t, cfg, broker.SubscribeOptions{FromStart: true}, func(d broker.Delivery) publishertest.Received {
						return publishertest.Received{Body: d.Body, MsgID: d.MsgID}
					})
				},
				// The brokers close every connection and come back on the
				// same ports with the same data.
				Disconnect: func(t *testing.T) { c.restart(t) },
			}
		},
		// Kafka keeps what it acknowledged. The idempotent producer drops
		// the retries of one producer session, not a relay's republish of
		// an event, so Dedup is false.
		Features: publishertest.Features{Persistent: true},
	}
}

// poison makes m larger than the topic's max.message.bytes, which no retry
// can fix.
func poison(m *outbox.Message) {
	m.Body = []byte(`{"data":"` + strings.Repeat("x", 2*poisonLimit) + `"}`)
}

func TestConformance(t *testing.T) {
	publishertest.Run(t, harness())
}
