package rabbitmq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestOutage: while the broker refuses the publisher (its connection was
// dropped and guest lost the vhost), Publish fails at once and retryably;
// once the broker lets it in again, the same Publisher succeeds.
func TestOutage(t *testing.T) {
	t.Parallel()
	ns := namespaceIn(t, newVhost(t))
	cfg := ns.cfg
	cfg.Queue = ns.queue
	p := connect(t, cfg)
	before := publishertest.Batch(t, "before", 5, 1)
	publishOK(t, p, before)

	rabbitmqctl(t, "clear_permissions", "-p", ns.vhost, "guest")
	ns.dropConnections(t, "")
	during := publishertest.Batch(t, "during", 5, 1)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		begin := time.Now()
		errs := p.Publish(ctx, during)
		cancel()
		if d := time.Since(begin); d > time.Second {
			t.Fatalf("Publish during the outage took %s; it should fail at once", d)
		}
		for i, err := range errs {
			if err == nil || outbox.IsPermanent(err) || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("message %d during the outage: %v, want a prompt retryable error", i, err)
			}
		}
		t.Logf("during the outage: %v", errs[0])
		time.Sleep(200 * time.Millisecond)
	}
	if errs := p.Publish(testCtx(t), during); !errors.Is(errs[0], rabbitmq.ErrNotConnected) {
		t.Fatalf("during the outage: %v, want ErrNotConnected", errs[0])
	}

	rabbitmqctl(t, "set_permissions", "-p", ns.vhost, "guest", ".*", ".*", ".*")
	deadline := time.Now().Add(30 * time.Second)
	for {
		errs := p.Publish(testCtx(t), during)
		if errs[0] == nil {
			for i, err := range errs {
				if err != nil {
					t.Fatalf("message %d after the outage: %v", i, err)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 30s after the outage: %v", errs[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	for range len(before) + len(during) {
		publishertest.Next(t, ch)
	}
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	begin := time.Now()
	// Port 1 on loopback: nothing listens there.
	p, err := rabbitmq.Connect(ctx, rabbitmq.Config{URL: "amqp://herald:s3cr3tpw@127.0.0.1:1/"})
	if err == nil {
		_ = p.Close()
		t.Fatal("Connect to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3tpw") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %q should name the server without its password", err)
	}
	if d := time.Since(begin); d > 2500*time.Millisecond {
		t.Fatalf("Connect took %s past its 2s context", d)
	}
}

// TestConnectTimeout: a server that accepts TCP but never speaks AMQP is
// given up on within ctx.
func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	ln := listenSilently(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	begin := time.Now()
	p, err := rabbitmq.Connect(ctx, rabbitmq.Config{URL: "amqp://" + ln})
	if err == nil {
		_ = p.Close()
		t.Fatal("Connect to a silent server succeeded")
	}
	if d := time.Since(begin); d > 1500*time.Millisecond {
		t.Fatalf("Connect took %s past its 0.5s context: %v", d, err)
	}
}

func TestConnectWrongPassword(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.URL = strings.Replace(cfg.URL, "guest:guest@", "guest:Wr0ngPassw0rd@", 1)
	p, err := rabbitmq.Connect(testCtx(t), cfg)
	if err == nil {
		_ = p.Close()
		t.Fatal("Connect with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "Wr0ngPassw0rd") || !strings.Contains(err.Error(), "guest:xxxxx@") {
		t.Fatalf("error %q should name the server and user without the password", err)
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Fatalf("error %v: want the broker's ACCESS_REFUSED underneath", err)
	}
}

// TestConnectExchangeMismatch: an exchange of another type under the name
// is a configuration error Connect reports.
func TestConnectExchangeMismatch(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	if err := ns.raw(t).ExchangeDeclare(ns.cfg.Exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	p, err := rabbitmq.Connect(testCtx(t), ns.cfg)
	if err == nil {
		_ = p.Close()
		t.Fatal("Connect to a direct exchange of the name succeeded")
	}
	if !strings.Contains(err.Error(), "declare exchange "+ns.cfg.Exchange) || !strings.Contains(err.Error(), "PRECONDITION_FAILED") {
		t.Fatalf("error %q should name the exchange and the broker's refusal", err)
	}
}

// TestPublishWithoutConfigurePermission: a user who may not declare, only
// write and read, publishes to an exchange (and queue) declared by others.
func TestPublishWithoutConfigurePermission(t *testing.T) {
	t.Parallel()
	ns := namespaceIn(t, newVhost(t))
	cfg := ns.cfg
	cfg.Queue = ns.queue
	if err := connect(t, cfg).Close(); err != nil { // declares both
		t.Fatal(err)
	}
	rabbitmqctl(t, "set_permissions", "-p", ns.vhost, "guest", "^$", ".*", ".*")
	p := connect(t, cfg)
	msgs := publishertest.Batch(t, "noconf", 3, 1)
	publishOK(t, p, msgs)
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	for range msgs {
		publishertest.Next(t, ch)
	}
	rabbitmqctl(t, "set_permissions", "-p", ns.vhost, "guest", ".*", ".*", ".*") // for the cleanup
}

func TestInvalidConfigRefused(t *testing.T) {
	t.Parallel()
	for _, cfg := range []rabbitmq.Config{
		{Exchange: "amq.topic"},
		{Queue: strings.Repeat("q", 256)},
		{URL: "amqp://h/?exchange=x"},
		{URL: "amqp://h/a/b"},
		{URL: "amqp://h", Heartbeat: time.Millisecond},
		{URL: "amqp://h", Unroutable: 7},
		{URL: "amqp://h", MaxMessageSize: -1},
		{URL: "amqp://h", CACertFile: "/ca.pem"},
	} {
		if p, err := rabbitmq.Connect(testCtx(t), cfg); !errors.Is(err, rabbitmq.ErrInvalidConfig) {
			if p != nil {
				_ = p.Close()
			}
			t.Errorf("Connect with %+v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
