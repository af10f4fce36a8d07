package rabbitmq

import (
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/outbox"
)

// publishing is the wire form of m.
func publishing(m *outbox.Message) amqp.Publishing {
	pub := amqp.Publishing{
		ContentType:  ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID.String(),
		Timestamp:    m.CreatedAt,
		Type:         m.Type,
		Body:         m.Body,
	}
	for _, k := range []string{"traceparent", "tracestate"} {
		if v := m.Headers[k]; v != "" {
			if pub.Headers == nil {
				pub.Headers = amqp.Table{}
			}
			pub.Headers[k] = v
		}
	}
	return pub
}
