package guarantees_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	brk "github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
)

// eventBroker is where a guarantee test's relays publish: a namespace
// (stream, exchange and queue) of the test's own on one broker.
type eventBroker interface {
	// publisher connects a new publisher to the namespace.
	publisher(t *testing.T) outbox.Publisher
	// received reads everything the namespace got, in the broker's order:
	// at least every message a publisher of it had acknowledged.
	received(t *testing.T) []outbox.CloudEvent
	// dropsDuplicates reports whether the broker itself drops an event
	// published again with the same id (JetStream, by Nats-Msg-Id); the
	// others keep the repeat, for consumers to drop by its id.
	dropsDuplicates() bool
}

// outageBroker is an eventBroker the test can take down and bring back.
type outageBroker interface {
	eventBroker
	down(t *testing.T)
	up(t *testing.T)
}

// brokerKinds are the brokers every per-broker guarantee test runs on.
var brokerKinds = []struct {
	name string
	open func(t *testing.T) eventBroker
}{
	{"nats", func(t *testing.T) eventBroker { return newBroker(t, machineNATSURL()) }},
	{"rabbitmq", func(t *testing.T) eventBroker { return newRabbitMQ(t, machineRabbitURL) }},
	{"redis", func(t *testing.T) eventBroker { return newRedis(t, machineRedisAddr) }},
}

// outageKinds are the brokers G2's outage test stops and restarts: private
// servers (NATS, Redis) or a private virtual host (RabbitMQ).
var outageKinds = []struct {
	name string
	open func(t *testing.T) outageBroker
}{
	{"nats", newNATSServer},
	{"rabbitmq", newRabbitVhost},
	{"redis", newRedisServer},
}

const (
	machineRabbitURL = "amqp://guest:guest@127.0.0.1:5672/"
	machineRedisAddr = "127.0.0.1:6379"
)

// forEachBroker runs test as a parallel subtest per broker kind and
// backend.
func forEachBroker(t *testing.T, test func(t *testing.T, b *backend, br eventBroker)) {
	t.Helper()
	for _, k := range brokerKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, b *backend) { test(t, b, k.open(t)) })
		})
	}
}

func (b *broker) dropsDuplicates() bool { return true }

// subscribedBroker is a broker read by a subscription that runs from the
// namespace's creation to the end of the test; its publishers count the
// messages the broker acknowledged, which received waits for.
type subscribedBroker struct {
	connect func(ctx context.Context) (outbox.Publisher, error)
	acked   atomic.Int64
	mu      sync.Mutex
	got     []brk.Delivery
}

func (s *subscribedBroker) add(d brk.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, d)
}

func (s *subscribedBroker) dropsDuplicates() bool { return false }

func (s *subscribedBroker) publisher(t *testing.T) outbox.Publisher {
	t.Helper()
	p, err := s.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &ackCounter{Publisher: p, acked: &s.acked}
}

func (s *subscribedBroker) received(t *testing.T) []outbox.CloudEvent {
	t.Helper()
	want := int(s.acked.Load())
	waitUntil(t, fmt.Sprintf("the %d acknowledged messages to arrive", want), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.got) >= want
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]outbox.CloudEvent, 0, len(s.got))
	for _, d := range s.got {
		if d.Err != nil {
			t.Errorf("undecodable message at %s: %v", d.Where, d.Err)
			continue
		}
		if d.MsgID != d.Event.ID {
			t.Errorf("message id %q differs from event id %q", d.MsgID, d.Event.ID)
		}
		out = append(out, d.Event)
	}
	return out
}

// ackCounter counts the messages the broker acknowledged.
type ackCounter struct {
	outbox.Publisher
	acked *atomic.Int64
}

func (a *ackCounter) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := a.Publisher.Publish(ctx, msgs)
	for _, err := range errs {
		if err == nil {
			a.acked.Add(1)
		}
	}
	return errs
}

// newRabbitMQ is an exchange and a durable queue of the test's own on the
// RabbitMQ at url, deleted at the end. The queue is declared and consumed
// before anything is published.
func newRabbitMQ(t *testing.T, url string) *subscribedBroker {
	t.Helper()
	name := "herald-g-" + randomName()
	cfg := rabbitmq.Config{URL: url, Exchange: name, Queue: name}
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		defer func() { _ = conn.Close() }()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		if _, err := ch.QueueDelete(name, false, false, false); err != nil {
			t.Errorf("delete the queue: %v", err)
		}
		if err := ch.ExchangeDelete(name, false, false); err != nil {
			t.Errorf("delete the exchange: %v", err)
		}
	})
	s := &subscribedBroker{connect: func(ctx context.Context) (outbox.Publisher, error) { return rabbitmq.Connect(ctx, cfg) }}
	subscribe(t, s, func(ctx context.Context) (func(), error) {
		return rabbitmq.Subscribe(ctx, cfg, brk.SubscribeOptions{FromStart: true}, s.add)
	})
	return s
}

// newRedis is a stream of the test's own on the Redis at addr, deleted at
// the end.
func newRedis(t *testing.T, addr string) *subscribedBroker {
	t.Helper()
	stream := "herald-g-" + randomName()
	cfg := redisstream.Config{Addr: addr, Stream: stream}
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer func() { _ = rdb.Close() }()
		if err := rdb.Del(context.Background(), stream).Err(); err != nil {
			t.Errorf("delete the stream: %v", err)
		}
	})
	s := &subscribedBroker{connect: func(ctx context.Context) (outbox.Publisher, error) { return redisstream.Connect(ctx, cfg) }}
	subscribe(t, s, func(ctx context.Context) (func(), error) {
		return redisstream.Subscribe(ctx, cfg, brk.SubscribeOptions{FromStart: true}, s.add)
	})
	return s
}

// subscribe starts the broker's subscription, stopped at the end.
func subscribe(t *testing.T, _ *subscribedBroker, start func(ctx context.Context) (func(), error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stop, err := start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// natsServer is a private embedded NATS server with a stream on it.
type natsServer struct {
	*broker
	srv  *embeddednats.Server
	port int
	dir  string
}

func newNATSServer(t *testing.T) outageBroker {
	t.Helper()
	n := &natsServer{dir: t.TempDir()}
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	n.srv, n.port = srv, srv.Port()
	t.Cleanup(func() { n.srv.Shutdown() })
	n.broker = newBroker(t, srv.ClientURL())
	return n
}

func (n *natsServer) down(*testing.T) { n.srv.Shutdown() }

func (n *natsServer) up(t *testing.T) {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Config{Port: n.port, StoreDir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
}

// redisServer is a private redis-server on a free loopback port, with an
// append-only file so that a restart keeps the stream.
type redisServer struct {
	*subscribedBroker
	port, dir string
	cmd       *exec.Cmd
	done      chan struct{}
}

func newRedisServer(t *testing.T) outageBroker {
	t.Helper()
	r := &redisServer{port: freePort(t), dir: t.TempDir()}
	r.up(t)
	t.Cleanup(func() { r.stop() })
	r.subscribedBroker = newRedis(t, "127.0.0.1:"+r.port)
	return r
}

func (r *redisServer) up(t *testing.T) {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", r.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", r.dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(r.done) }()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + r.port})
	defer func() { _ = rdb.Close() }()
	waitUntil(t, "redis-server to answer", func() bool {
		select {
		case <-r.done:
			t.Fatalf("redis-server exited: %v", cmd.ProcessState)
		default:
		}
		return rdb.Ping(context.Background()).Err() == nil
	})
}

// stop ends the server with SIGTERM, which writes the append-only file out.
func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	<-r.done
	r.cmd = nil
}

func (r *redisServer) down(*testing.T) { r.stop() }

// rabbitVhost is an exchange and queue in a virtual host of the test's own
// on the machine's RabbitMQ; the outage takes the guest user's permissions
// on it away and closes its connections, so that reconnecting is refused.
type rabbitVhost struct {
	*subscribedBroker
	vhost string
}

func newRabbitVhost(t *testing.T) outageBroker {
	t.Helper()
	v := &rabbitVhost{vhost: "herald-g2-" + randomName()}
	rabbitctl(t, "add_vhost", v.vhost)
	t.Cleanup(func() { rabbitctl(t, "delete_vhost", v.vhost) })
	v.up(t)
	v.subscribedBroker = newRabbitMQ(t, machineRabbitURL+v.vhost)
	return v
}

func (v *rabbitVhost) up(t *testing.T) {
	rabbitctl(t, "set_permissions", "-p", v.vhost, "guest", ".*", ".*", ".*")
}

func (v *rabbitVhost) down(t *testing.T) {
	rabbitctl(t, "clear_permissions", "-p", v.vhost, "guest")
	rabbitctl(t, "close_all_connections", "--vhost", v.vhost, "herald guarantee test: outage")
}

func rabbitctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// dedupe drops the repeats of an event, as a consumer does by its id,
// keeping the first arrival. Every repeat must be the same event (id,
// aggregate, sequence, type, data); it returns the events and the number
// of repeats.
func dedupe(t *testing.T, received []outbox.CloudEvent) ([]outbox.CloudEvent, int) {
	t.Helper()
	first := map[string]outbox.CloudEvent{}
	var out []outbox.CloudEvent
	for _, ce := range received {
		f, seen := first[ce.ID]
		if !seen {
			first[ce.ID] = ce
			out = append(out, ce)
			continue
		}
		if f.Subject != ce.Subject || f.Sequence != ce.Sequence || f.Type != ce.Type || !slices.Equal(f.Data, ce.Data) {
			t.Errorf("a repeat of %s differs from its first delivery: %+v, first %+v", ce.ID, ce, f)
		}
	}
	return out, len(received) - len(out)
}
