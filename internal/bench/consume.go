package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	hbroker "github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/natsjs"
)

// consumer reads an endpoint back and hands each event to a function,
// counting what it reads.
type consumer struct {
	stop func()
	msgs atomic.Int64
	last atomic.Int64 // unix nanos of the last message
}

// consume subscribes to the endpoint e (new messages only with deliverNew)
// and calls fn for each message, in order per aggregate (a webhook's
// deliveries concurrently, as they arrive).
func consume(ctx context.Context, e *endpoint, deliverNew bool, fn func(d hbroker.Delivery, at time.Time)) (*consumer, error) {
	c := &consumer{}
	stop, err := e.subscribe(ctx, !deliverNew, func(d hbroker.Delivery) {
		now := time.Now()
		c.msgs.Add(1)
		c.last.Store(now.UnixNano())
		fn(d, now)
	})
	if err != nil {
		return nil, err
	}
	c.stop = stop
	return c, nil
}

// consumeNATS reads the stream of cfg on natsURL with natsjs.Subscribe, in
// stream order, from one goroutine.
func consumeNATS(ctx context.Context, natsURL string, cfg natsjs.Config, deliverNew bool, fn func(d hbroker.Delivery)) (*consumer, error) {
	nc, err := nats.Connect(natsURL, natsjs.ConnectOptions(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("bench: consumer: connect to NATS: %w", err)
	}
	stop, err := natsjs.Subscribe(ctx, nc, cfg, natsjs.SubscribeOptions{DeliverNew: deliverNew}, func(d natsjs.Delivery) { fn(fromNATS(d)) })
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &consumer{stop: func() { stop(); nc.Close() }}, nil
}

// Close ends the subscription.
func (c *consumer) Close() { c.stop() }

// lastAt is the time of the last message, zero before the first.
func (c *consumer) lastAt() time.Time {
	n := c.last.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// waitFor polls done until it holds, ctx ends, or no message has arrived for
// idle (and the time since start exceeds idle). It reports whether done held.
func (c *consumer) waitFor(ctx context.Context, idle time.Duration, done func() bool) bool {
	start := time.Now()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if done() {
			return true
		}
		last := c.lastAt()
		if last.Before(start) {
			last = start
		}
		if time.Since(last) > idle {
			return false
		}
		select {
		case <-ctx.Done():
			return done()
		case <-t.C:
		}
	}
}

// readBack reads the whole endpoint back and checks it against the backlog.
func readBack(ctx context.Context, e *endpoint, b backlog, idle time.Duration) (VerifyReport, error) {
	r, err := startReadBack(ctx, e, b, false)
	if err != nil {
		return VerifyReport{}, err
	}
	return r.finish(ctx, idle), nil
}

// reading is a read-back under way.
type reading struct {
	v *Verifier
	c *consumer
}

// startReadBack subscribes to e (from the start, or from now on with
// live) and checks what it reads against the backlog.
func startReadBack(ctx context.Context, e *endpoint, b backlog, live bool) (*reading, error) {
	v := NewVerifier()
	b.expect(v)
	c, err := consume(ctx, e, live, func(d hbroker.Delivery, _ time.Time) {
		if d.Err != nil || d.Event.AggregateType != "order" {
			v.Invalid()
			return
		}
		v.Observe(d.Event.Subject, d.Event.Sequence)
	})
	if err != nil {
		return nil, err
	}
	return &reading{v: v, c: c}, nil
}

// finish waits for the backlog's events (until none has come for idle) and
// ends the read-back.
func (r *reading) finish(ctx context.Context, idle time.Duration) VerifyReport {
	defer r.c.Close()
	r.c.waitFor(ctx, idle, func() bool { return r.v.Pending() == 0 })
	return r.v.Report()
}
