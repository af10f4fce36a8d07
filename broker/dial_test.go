package broker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// okPublisher acknowledges everything and counts its Close calls.
type okPublisher struct{ closes atomic.Int32 }

func (p *okPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	return make([]error, len(msgs))
}
func (p *okPublisher) Close() error { p.closes.Add(1); return nil }

var errDown = errors.New("connection refused")

// A broker down at start: publishes fail with a retryable ErrNotConnected
// naming the cause, until a later attempt connects; then they go through.
func TestDialConnectsInTheBackground(t *testing.T) {
	t.Parallel()
	pub := &okPublisher{}
	var attempts atomic.Int32
	up := make(chan struct{})
	d := broker.Dial(func(ctx context.Context) (outbox.Publisher, error) {
		select {
		case <-up:
			attempts.Add(1)
			return pub, nil
		default:
			attempts.Add(1)
			return nil, errDown
		}
	}, nil)
	defer func() { _ = d.Close() }()

	msgs := make([]outbox.Message, 3)
	for attempts.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for i, err := range d.Publish(context.Background(), msgs) {
		if !errors.Is(err, broker.ErrNotConnected) || !errors.Is(err, errDown) || !errors.Is(err, outbox.ErrBrokerUnavailable) || outbox.IsPermanent(err) {
			t.Fatalf("message %d before the broker is up: %v, want a retryable ErrNotConnected wrapping the cause", i, err)
		}
	}
	close(up)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p, _ := d.Connected(); p != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not connected 30s after the broker came up (%d attempts)", attempts.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, err := range d.Publish(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("message %d once connected: %v", i, err)
		}
	}
	if attempts.Load() < 2 {
		t.Fatalf("%d attempts: the broker was down at the first", attempts.Load())
	}
	_ = d.Close()
	_ = d.Close()
	if n := pub.closes.Load(); n != 1 {
		t.Fatalf("the connected publisher was closed %d times, want once", n)
	}
	if errs := d.Publish(context.Background(), msgs); !errors.Is(errs[0], broker.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed (not the closed publisher)", errs[0])
	}
}

// Close while the broker is still down stops the dialling (goleak checks
// that nothing is left running) and fails later publishes.
func TestDialCloseWhileDown(t *testing.T) {
	t.Parallel()
	d := broker.Dial(func(ctx context.Context) (outbox.Publisher, error) { return nil, errDown }, nil)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	errs := d.Publish(context.Background(), make([]outbox.Message, 1))
	if len(errs) != 1 || !errors.Is(errs[0], broker.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", errs)
	}
}
