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
//
// Runs stay in order: suspects are tried in the call's order, and once an
// aggregate's record failed (here or already in the batch, for another
// reason) its later suspects are not tried: they fail with
// outbox.ErrRunBroken.
func (p *Publisher) isolate(ctx context.Context, msgs []outbox.Message, errs []error, suspects []int) {
	isSuspect := make(map[int]bool, len(suspects))
	for _, i := range suspects {
		isSuspect[i] = true
	}
	brokenAt := map[runKey]int{} // an aggregate's first record that failed for good
	for i := range msgs {
		if k := keyOf(&msgs[i]); errs[i] != nil && !isSuspect[i] {
			if _, ok := brokenAt[k]; !ok {
				brokenAt[k] = i
			}
		}
	}
	// broken reports whether an earlier record of i's aggregate failed.
	broken := func(i int) bool {
		f, ok := brokenAt[keyOf(&msgs[i])]
		if ok && f < i {
			errs[i] = runBroken(&msgs[f], errs[f])
		}
		return ok && f < i
	}
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
	pr, err := p.newProducer(func(string) int32 { return clampBatchBytes(limit) })
	if err != nil {
		return // the errors stay as they are: retryable
	}
	defer pr.cl.Close()
	for _, i := range suspects { // in the call's order
		if broken(i) {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs[i] = ctxError(err)
		} else {
			perrs, done, _ := p.produce(ctx, pr, msgs[i:i+1])
			errs[i] = perrs[0]
			if done[0] {
				v, err := p.classify(ctx, perrs[0])
				if v == suspect {
					err = outbox.Permanent(err)
				}
				errs[i] = err // a topic gone meanwhile: retryable, the next call sees to it
			}
		}
		if k := keyOf(&msgs[i]); errs[i] != nil {
			if f, ok := brokenAt[k]; !ok || i < f {
				brokenAt[k] = i
			}
		}
	}
}
