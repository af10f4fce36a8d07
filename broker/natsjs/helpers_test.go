package natsjs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nats.go v1.55 jetstream: the first asynchronous publish starts
		// resetPendingAcksOnReconnect, which reads the status channel under
		// the publisher's lock; a Publisher closed before it got the lock
		// (cleanupReplySub sets the channel to nil) leaves it receiving from
		// a nil channel forever. Upstream's race, seen under load with the
		// consumer suites running beside the publisher's.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"))
}

// localURL is the machine's NATS server (JetStream enabled):
// $HERALD_TEST_NATS_URL, or nats://127.0.0.1:4222.
func localURL() string {
	if u := os.Getenv("HERALD_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// uniqueConfig names a stream and subject prefix no other test uses, and
// deletes the stream on url when the test ends.
func uniqueConfig(t testing.TB, url string) natsjs.Config {
	t.Helper()
	id := strings.ToUpper(randomHex(6))
	cfg := natsjs.Config{Stream: "HERALD_TEST_" + id, SubjectPrefix: "heraldtest." + strings.ToLower(id) + "."}
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Errorf("cleanup: connect: %v", err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, cfg.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("cleanup: delete stream %s: %v", cfg.Stream, err)
		}
	})
	return cfg
}

// startEmbedded starts an embedded server on a random port in a temp dir.
func startEmbedded(t testing.TB) *embeddednats.Server {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("embedded NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, url string, cfg natsjs.Config) *natsjs.Publisher {
	t.Helper()
	p, err := natsjs.Connect(testCtx(t), url, cfg)
	if err != nil {
		t.Fatalf("Connect(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// subscribe reads cfg's stream into a channel, converting each delivery
// with conv; the subscription is stopped at cleanup.
func subscribeInto[T any](t testing.TB, url string, cfg natsjs.Config, opts natsjs.SubscribeOptions, conv func(natsjs.Delivery) T) <-chan T {
	t.Helper()
	nc := dial(t, url)
	ch := make(chan T, 1<<14)
	done := make(chan struct{})
	stop, err := natsjs.Subscribe(testCtx(t), nc, cfg, opts, func(d natsjs.Delivery) {
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

func subscribe(t testing.TB, url string, cfg natsjs.Config, opts natsjs.SubscribeOptions) <-chan natsjs.Delivery {
	t.Helper()
	return subscribeInto(t, url, cfg, opts, func(d natsjs.Delivery) natsjs.Delivery { return d })
}

// harness runs the conformance suite on the server at url, each instance
// on a stream of its own.
func harness(url string) publishertest.Harness {
	return publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			cfg := uniqueConfig(t, url)
			p, err := natsjs.Connect(testCtx(t), url, cfg)
			if err != nil {
				t.Fatalf("Connect(%s): %v", url, err)
			}
			return publishertest.Instance{
				Publisher: p,
				Poison:    poison,
				Consume: func(t *testing.T) <-chan publishertest.Received {
					return subscribeInto(t, url, cfg, natsjs.SubscribeOptions{}, func(d natsjs.Delivery) publishertest.Received {
						return publishertest.Received{Body: d.Body, MsgID: d.Header.Get(jetstream.MsgIDHeader)}
					})
				},
			}
		},
		Features: publishertest.Features{Dedup: true, Persistent: true},
	}
}

// poison makes m larger than the server's 1 MiB maximum payload, which no
// retry can fix.
func poison(m *outbox.Message) {
	m.Body = []byte(`{"data":"` + strings.Repeat("x", 2<<20) + `"}`)
}

// embeddedHarness gives each instance an embedded server of its own, which
// Disconnect restarts on the same port and store: the publisher's
// connection is dropped from the server's side and the stream survives.
func embeddedHarness() publishertest.Harness {
	return publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			dir := t.TempDir()
			srv := startEmbeddedIn(t, embeddednats.RandomPort, dir)
			// The server of the moment is shut down after the instance's
			// other cleanups, which still need it.
			t.Cleanup(func() { srv.Shutdown() })
			url, port := srv.ClientURL(), srv.Port()
			in := harness(url).New(t)
			in.Poison = poison
			in.Disconnect = func(t *testing.T) {
				srv.Shutdown()
				srv = startEmbeddedIn(t, port, dir)
			}
			return in
		},
		Features: publishertest.Features{Dedup: true, Persistent: true},
	}
}

func startEmbeddedIn(t testing.TB, port int, dir string) *embeddednats.Server {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Config{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatalf("embedded NATS: %v", err)
	}
	return srv
}

// next waits for one delivery.
func next(t testing.TB, ch <-chan natsjs.Delivery) natsjs.Delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(15 * time.Second):
		t.Fatal("no delivery within 15s")
		return natsjs.Delivery{}
	}
}

// publishOK publishes msgs and fails t unless all were acked.
func publishOK(t testing.TB, p outbox.Publisher, msgs []outbox.Message) {
	t.Helper()
	for i, err := range p.Publish(testCtx(t), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}
