package rabbitmq_test

import (
	"testing"

	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestConformance runs the publisher suite against the machine's RabbitMQ,
// each instance in a vhost of its own. Dedup is not declared: RabbitMQ
// keeps every copy of a re-published event.
func TestConformance(t *testing.T) {
	publishertest.Run(t, harness())
}
