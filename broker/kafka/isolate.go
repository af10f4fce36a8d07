package kafka

import (
	"context"

	"github.com/heraldhq/herald/outbox"
)

// isolate produces each record of suspects again alone, and calls it
// permanent only if Kafka refuses it alone too. Kafka refuses a batch
// whole, so every record that shared a batch with one too large or invalid
// was refused with it; and the client's batches mix the records of
// concurrent Publish calls. The records are therefore tried on a client of
// their own, one at a time, so that nothing else can share their batch.
// Their errors stay retryable when ctx ends first.
//
// This is the rare path: the client sizes its batches by the topic's
// max.message.bytes and refuses a record over it before sending it, so a
// batch is refused whole only when the limit was lowered since Connect or
// a record is invalid.
func (p *Publisher) isolate(ctx context.Context, msgs []outbox.Message, errs []error, suspects []int) {
	select {
	case p.probing <- struct{}{}:
		defer func() { <-p.probing }()
	case <-ctx.Done():
		for _, i := range suspects {
			errs[i] = ctxError(ctx.Err())
		}
		return
	}
	limit := p.maxBytes.Load()
	if n, err := topicMaxMessageBytes(ctx, p.cl, p.cfg.Topic); err == nil && n != limit {
		p.cfg.Logger.Warn("kafka: the topic's max.message.bytes changed since Connect; batches may be refused whole until the publisher is restarted",
			"topic", p.cfg.Topic, "was", limit, "now", n)
		limit = n
	}
	cl, err := p.newClient(func(string) int32 { return clampBatchBytes(limit) })
	if err != nil {
		return // the errors stay as they are: retryable
	}
	defer cl.Close()
	for _, i := range suspects {
		if err := ctx.Err(); err != nil {
			errs[i] = ctxError(err)
			continue
		}
		perrs, done := p.produce(ctx, cl, msgs[i:i+1])
		if !done[0] {
			errs[i] = perrs[0]
			continue
		}
		v, err := p.classify(ctx, perrs[0])
		if v == suspect {
			err = outbox.Permanent(err)
		}
		errs[i] = err // a topic gone meanwhile: retryable, the next call sees to it
	}
}
