package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/broker/natsjs"
)

// consumer reads a stream with natsjs.Subscribe and hands each event to a
// function, counting what it reads.
type consumer struct {
	nc   *nats.Conn
	stop func()
	msgs atomic.Int64
	last atomic.Int64 // unix nanos of the last message
}

// consume subscribes to the stream of cfg on natsURL (new messages only with
// deliverNew) and calls fn for each message, in stream order, from one
// goroutine.
func consume(ctx context.Context, natsURL string, cfg natsjs.Config, deliverNew bool, fn func(d natsjs.Delivery, at time.Time)) (*consumer, error) {
	nc, err := nats.Connect(natsURL, natsjs.ConnectOptions(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("bench: consumer: connect to NATS: %w", err)
	}
	c := &consumer{nc: nc}
	stop, err := natsjs.Subscribe(ctx, nc, cfg, natsjs.SubscribeOptions{DeliverNew: deliverNew}, func(d natsjs.Delivery) {
		now := time.Now()
		c.msgs.Add(1)
		c.last.Store(now.UnixNano())
		fn(d, now)
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.stop = stop
	return c, nil
}

// Close ends the subscription and the connection.
func (c *consumer) Close() {
	c.stop()
	c.nc.Close()
}

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

// readBack reads the whole stream of cfg and checks it against the backlog.
func readBack(ctx context.Context, natsURL string, cfg natsjs.Config, b backlog, idle time.Duration) (VerifyReport, error) {
	v := NewVerifier()
	b.expect(v)
	c, err := consume(ctx, natsURL, cfg, false, func(d natsjs.Delivery, _ time.Time) {
		if d.Err != nil || d.Event.AggregateType != "order" {
			v.Invalid()
			return
		}
		v.Observe(d.Event.Subject, d.Event.Sequence)
	})
	if err != nil {
		return VerifyReport{}, err
	}
	defer c.Close()
	c.waitFor(ctx, idle, func() bool { return v.Pending() == 0 })
	return v.Report(), nil
}
