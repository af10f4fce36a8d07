package kafka_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestCloseWaitsForPublish: Close returns only after a Publish in flight
// has returned, with its acks; Publish after Close fails every message
// retryably with ErrClosed; Close twice is safe.
func TestCloseWaitsForPublish(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	p := connect(t, config(c))
	publishOK(t, p, publishertest.Batch(t, "warm", 3, 1))

	stalled, release := make(chan struct{}), make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		close(stalled)
		<-release
		c.DropControl()
		return nil, nil, false
	})
	published := make(chan []error)
	go func() { published <- p.Publish(testCtx(t), publishertest.Batch(t, "inflight", 10, 1)) }()
	<-stalled
	closed := make(chan error)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a Publish was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	for i, err := range <-published {
		if err != nil {
			t.Fatalf("message %d in flight during Close: %v", i, err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, err := range p.Publish(testCtx(t), publishertest.Batch(t, "after", 3, 1)) {
		if !errors.Is(err, kafka.ErrClosed) || outbox.IsPermanent(err) {
			t.Fatalf("message %d after Close: %v, want a retryable ErrClosed", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	begin := time.Now()
	// Port 1 on loopback: nothing listens there.
	cfg := kafka.Config{Brokers: []string{"127.0.0.1:1"}, SASL: kafka.SASL{Mechanism: "plain", User: "herald", Password: "s3cret-pw"}}
	p, err := kafka.Connect(ctx, cfg)
	if err == nil {
		_ = p.Close()
		t.Fatal("Connect to a closed port succeeded")
	}
	t.Logf("Connect failed in %s: %v", time.Since(begin), err)
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error %q shows the password", err)
	}
}

func TestConnectInvalidConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []kafka.Config{
		{Topic: "has space"},
		{Topic: strings.Repeat("t", 250)},
		{Brokers: []string{"no-port"}},
		{SASL: kafka.SASL{Mechanism: "gssapi", User: "u"}},
		{SASL: kafka.SASL{User: "u", Password: "p"}},
		{Compression: "brotli"},
		{TLSCAFile: "/nonexistent/ca.pem"},
	} {
		p, err := kafka.Connect(testCtx(t), cfg)
		if err == nil {
			_ = p.Close()
			t.Fatalf("Connect with %v succeeded", cfg)
		}
		if !errors.Is(err, kafka.ErrInvalidConfig) {
			t.Fatalf("Connect with %v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
