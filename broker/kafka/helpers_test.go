package kafka_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cluster is a kfake cluster of three brokers on 127.0.0.1 that keeps its
// data in a directory of the test's, so that restart brings back the same
// brokers on the same ports with the same topics and records.
type cluster struct {
	*kfake.Cluster
	addrs []string
	ports []int
	dir   string
	opts  []kfake.Opt
}

// startCluster starts a cluster, closed at cleanup.
func startCluster(t testing.TB, opts ...kfake.Opt) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir(), opts: opts}
	kc, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3), kfake.DataDir(c.dir)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	c.Cluster, c.addrs = kc, kc.ListenAddrs()
	for _, a := range c.addrs {
		_, port, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(port)
		c.ports = append(c.ports, n)
	}
	// The cluster of the moment is closed after the test's other
	// cleanups, which may still need it.
	t.Cleanup(func() { c.Close() })
	return c
}

// stop closes every broker: connections are dropped from the brokers' side
// and new ones refused.
func (c *cluster) stop() { c.Close() }

// start brings the brokers back on the same ports, with the data they had.
func (c *cluster) start(t testing.TB) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // a port may linger a moment
		var kc *kfake.Cluster
		kc, err = kfake.NewCluster(append([]kfake.Opt{kfake.Ports(c.ports...), kfake.DataDir(c.dir)}, c.opts...)...)
		if err == nil {
			c.Cluster = kc
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("kfake restart: %v", err)
}

// restart is stop then start.
func (c *cluster) restart(t testing.TB) {
	t.Helper()
	c.stop()
	c.start(t)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testLogger writes the publisher's log to stderr when
// HERALD_TEST_KAFKA_LOG is set (debug, info, warn, error); it is discarded
// otherwise.
func testLogger() *slog.Logger {
	var level slog.Level
	switch os.Getenv("HERALD_TEST_KAFKA_LOG") {
	case "":
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// config names a topic no other test uses, on c.
func config(c *cluster) kafka.Config {
	return kafka.Config{
		Brokers: c.addrs,
		Topic:   "herald-test-" + randomHex(6),
		Logger:  testLogger(),
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, cfg kafka.Config) *kafka.Publisher {
	t.Helper()
	p, err := kafka.Connect(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// subscribeInto reads cfg's topic into a channel, converting each delivery
// with conv; the subscription is stopped at cleanup.
func subscribeInto[T any](t testing.TB, cfg kafka.Config, opts broker.SubscribeOptions, conv func(broker.Delivery) T) <-chan T {
	t.Helper()
	return publishertest.SubscribeInto(t, kafka.Subscribe, cfg, opts, conv)
}

func subscribe(t testing.TB, cfg kafka.Config, opts broker.SubscribeOptions) <-chan broker.Delivery {
	t.Helper()
	return subscribeInto(t, cfg, opts, func(d broker.Delivery) broker.Delivery { return d })
}

// nothing checks that ch stays empty for a moment.
func nothing(t testing.TB, ch <-chan broker.Delivery) {
	t.Helper()
	select {
	case d := <-ch:
		t.Fatalf("unexpected delivery %s of %s", d.Where, d.Event.ID)
	case <-time.After(300 * time.Millisecond):
	}
}

// publishOK publishes msgs and fails t unless all were acked.
func publishOK(t testing.TB, p outbox.Publisher, msgs []outbox.Message) {
	t.Helper()
	errs := p.Publish(testCtx(t), msgs)
	if len(errs) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(errs), len(msgs))
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// publishEventually retries msgs, as the relay would, until every one is
// acked, failing t on a permanent error or after 30s.
func publishEventually(t testing.TB, p outbox.Publisher, msgs []outbox.Message) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	pending := msgs
	for len(pending) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs := p.Publish(ctx, pending)
		cancel()
		var failed []outbox.Message
		for i, err := range errs {
			if err == nil {
				continue
			}
			if outbox.IsPermanent(err) {
				t.Fatalf("message %s failed permanently: %v", pending[i].ID, err)
			}
			failed = append(failed, pending[i])
		}
		if len(failed) > 0 && time.Now().After(deadline) {
			t.Fatalf("%d messages still failing after 30s: %v", len(failed), errs[0])
		}
		if len(failed) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		pending = failed
	}
}
