package publishertest

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
)

// SubscribeInto runs an adapter's Subscribe (kafka.Subscribe,
// rabbitmq.Subscribe, redisstream.Subscribe…) with cfg and opts and hands
// each delivery, converted by conv, to the returned channel; the
// subscription stops when t ends. The channel holds 16k deliveries, so a
// test that reads only some of them does not block the subscription.
func SubscribeInto[C, T any](t testing.TB,
	subscribe func(ctx context.Context, cfg C, opts broker.SubscribeOptions, fn func(broker.Delivery)) (func(), error),
	cfg C, opts broker.SubscribeOptions, conv func(broker.Delivery) T,
) <-chan T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ch := make(chan T, 1<<14)
	done := make(chan struct{})
	stop, err := subscribe(ctx, cfg, opts, func(d broker.Delivery) {
		select {
		case ch <- conv(d):
		case <-done:
		}
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() {
		close(done)
		stop()
	})
	return ch
}

// Next waits up to 15 seconds for one value from ch and fails t without one.
func Next[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatal("no delivery within 15s")
		var zero T
		return zero
	}
}
