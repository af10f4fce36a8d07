package rabbitmq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestMain checks for leaked goroutines, as goleak.VerifyTestMain does,
// after deleting the vhost the tests shared.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.vhost != "" {
		if out, err := exec.Command("rabbitmqctl", "-q", "delete_vhost", shared.vhost).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "delete vhost %s: %v\n%s", shared.vhost, err, out)
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// The machine's RabbitMQ: $HERALD_TEST_AMQP_HOST (host:port), or
// 127.0.0.1:5672, as guest/guest; tests manage it with rabbitmqctl.
func brokerHost() string {
	if h := os.Getenv("HERALD_TEST_AMQP_HOST"); h != "" {
		return h
	}
	return "127.0.0.1:5672"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rabbitmqctl runs the broker's CLI and returns its output.
func rabbitmqctl(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// shared is the vhost the tests of one run share, each on its own
// exchange and queue. (A vhost per test costs three rabbitmqctl runs, half
// a second of CPU each, which ten parallel tests stretch to seconds.)
var shared struct {
	once  sync.Once
	vhost string
	err   error
}

// newVhost makes a vhost with all permissions for guest, deleted at cleanup.
func newVhost(t testing.TB) string {
	t.Helper()
	if c, err := net.DialTimeout("tcp", brokerHost(), 2*time.Second); err != nil {
		t.Fatalf("RabbitMQ is not listening on %s: %v", brokerHost(), err)
	} else {
		_ = c.Close()
	}
	vhost := "herald-test-" + randomHex(6)
	rabbitmqctl(t, "add_vhost", vhost)
	t.Cleanup(func() { rabbitmqctl(t, "delete_vhost", vhost) })
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	return vhost
}

// namespace is a test's own exchange, queue name and connection name, in
// the shared vhost or one of the test's own.
type namespace struct {
	vhost string
	queue string          // for Config.Queue, deleted at cleanup
	cfg   rabbitmq.Config // URL, Exchange and ConnectionName set
}

func newNamespace(t testing.TB) namespace {
	t.Helper()
	shared.once.Do(func() {
		vhost := "herald-test-" + randomHex(6)
		for _, args := range [][]string{
			{"add_vhost", vhost},
			{"set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"},
		} {
			if out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput(); err != nil {
				shared.err = fmt.Errorf("rabbitmqctl %s: %w\n%s", strings.Join(args, " "), err, out)
				return
			}
			shared.vhost = vhost
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return namespaceIn(t, shared.vhost)
}

func namespaceIn(t testing.TB, vhost string) namespace {
	t.Helper()
	id := randomHex(6)
	ns := namespace{
		vhost: vhost,
		queue: "herald-test-" + id,
		cfg: rabbitmq.Config{
			URL:            "amqp://guest:guest@" + brokerHost() + "/" + vhost,
			Exchange:       "herald-test-" + id,
			ConnectionName: "herald-test-" + id,
		},
	}
	t.Cleanup(func() {
		conn, err := amqp.Dial(ns.cfg.URL)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer func() { _ = conn.Close() }()
		for _, del := range []func(*amqp.Channel) error{
			func(ch *amqp.Channel) error { _, err := ch.QueueDelete(ns.queue, false, false, false); return err },
			func(ch *amqp.Channel) error { return ch.ExchangeDelete(ns.cfg.Exchange, false, false) },
		} {
			ch, err := conn.Channel()
			if err == nil {
				err = del(ch)
				_ = ch.Close()
			}
			if err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return ns
}

// dropConnections closes, from the broker's side, the connections of the
// namespace named name (the publisher's by default).
func (ns namespace) dropConnections(t testing.TB, name string) {
	t.Helper()
	if name == "" {
		name = ns.cfg.ConnectionName
	}
	out := rabbitmqctl(t, "list_connections", "--no-table-headers", "pid", "vhost", "client_properties")
	dropped := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) == 3 && f[1] == ns.vhost && strings.Contains(f[2], `{"connection_name","`+name+`"}`) {
			rabbitmqctl(t, "close_connection", f[0], "herald test: connection dropped")
			dropped++
		}
	}
	if dropped == 0 {
		t.Fatalf("no connection named %q in vhost %s:\n%s", name, ns.vhost, out)
	}
}

// raw dials the namespace with the plain client, for what the tests set up
// or inspect behind the adapter's back.
func (ns namespace) raw(t testing.TB) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(ns.cfg.URL)
	if err != nil {
		t.Fatalf("dial %s: %v", ns.vhost, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func connect(t testing.TB, cfg rabbitmq.Config) *rabbitmq.Publisher {
	t.Helper()
	p, err := rabbitmq.Connect(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// subscribeInto reads cfg's exchange into a channel, converting each
// delivery with conv; the subscription is stopped at cleanup.
func subscribeInto[T any](t testing.TB, cfg rabbitmq.Config, opts broker.SubscribeOptions, conv func(broker.Delivery) T) <-chan T {
	t.Helper()
	return publishertest.SubscribeInto(t, rabbitmq.Subscribe, cfg, opts, conv)
}

func subscribe(t testing.TB, cfg rabbitmq.Config, opts broker.SubscribeOptions) <-chan broker.Delivery {
	t.Helper()
	return subscribeInto(t, cfg, opts, func(d broker.Delivery) broker.Delivery { return d })
}

// none checks that nothing arrives for a moment.
func none[T any](t testing.TB, ch <-chan T) {
	t.Helper()
	select {
	case d := <-ch:
		t.Fatalf("unexpected delivery: %+v", d)
	case <-time.After(300 * time.Millisecond):
	}
}

// publishOK publishes msgs and fails t unless all were confirmed.
func publishOK(t testing.TB, p outbox.Publisher, msgs []outbox.Message) {
	t.Helper()
	for i, err := range p.Publish(testCtx(t), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// harness runs the conformance suite, each instance in a vhost of its own
// whose queue (Config.Queue) keeps what is published.
func harness() publishertest.Harness {
	return publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			ns := newNamespace(t)
			cfg := ns.cfg
			cfg.Queue = ns.queue
			p, err := rabbitmq.Connect(testCtx(t), cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			return publishertest.Instance{
				Publisher: p,
				Consume: func(t *testing.T) <-chan publishertest.Received {
					return subscribeInto(t, cfg, broker.SubscribeOptions{FromStart: true}, func(d broker.Delivery) publishertest.Received {
						return publishertest.Received{Body: d.Body, MsgID: d.MsgID}
					})
				},
				Poison:     poison,
				Disconnect: func(t *testing.T) { ns.dropConnections(t, "") },
			}
		},
		Features: publishertest.Features{Persistent: true},
	}
}

// poison makes m one byte larger than RabbitMQ's default max_message_size
// (128 MiB), which the broker refuses for good by closing the channel. It
// is the cheapest refusal with the broker's defaults: RabbitMQ routes,
// stores and confirms anything else a valid event can carry, and an
// unroutable message fails for good only under UnroutablePermanent
// (TestUnroutable). Sending it takes about 0.1s on loopback.
func poison(m *outbox.Message) {
	m.Body = make([]byte, 128<<20+1)
}

// listenSilently accepts TCP connections on loopback and never answers;
// it returns its address.
func listenSilently(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}
