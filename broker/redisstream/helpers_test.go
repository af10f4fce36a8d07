package redisstream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// localAddr is the machine's Redis: $HERALD_TEST_REDIS_ADDR, or
// 127.0.0.1:6379.
func localAddr() string {
	if a := os.Getenv("HERALD_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uniqueConfig names a stream and a client name no other test uses, and
// deletes the stream from the machine's Redis when the test ends (a private
// server goes with its test).
func uniqueConfig(t testing.TB, addr string) redisstream.Config {
	t.Helper()
	id := randomHex(6)
	cfg := redisstream.Config{Addr: addr, Stream: "herald-test." + id, ClientName: "herald-test-" + id}
	if addr != localAddr() {
		return cfg
	}
	t.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		defer func() { _ = rdb.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rdb.Del(ctx, cfg.Stream).Err(); err != nil {
			t.Errorf("cleanup: DEL %s: %v", cfg.Stream, err)
		}
	})
	return cfg
}

// admin returns a plain client of addr, closed at cleanup.
func admin(t testing.TB, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ClientName: "herald-test-admin"})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func connect(t testing.TB, cfg redisstream.Config) *redisstream.Publisher {
	t.Helper()
	p, err := redisstream.Connect(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Connect(%s): %v", cfg.Addr, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// killClients closes, from the server's side, every connection of addr
// named name: what an outage or a server-side timeout does to them.
func killClients(t testing.TB, addr, name string) int {
	t.Helper()
	rdb := admin(t, addr)
	list, err := rdb.ClientList(testCtx(t)).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(" "+line+" ", " name="+name+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				n, _ := strconv.ParseInt(id, 10, 64)
				if err := rdb.ClientKillByFilter(testCtx(t), "ID", strconv.FormatInt(n, 10)).Err(); err != nil {
					t.Fatalf("CLIENT KILL ID %d: %v", n, err)
				}
				killed++
			}
		}
	}
	return killed
}

// subscribeInto reads cfg's stream into a channel, converting each delivery
// with conv; the subscription is stopped at cleanup.
func subscribeInto[T any](t testing.TB, cfg redisstream.Config, opts broker.SubscribeOptions, conv func(broker.Delivery) T) <-chan T {
	t.Helper()
	return publishertest.SubscribeInto(t, redisstream.Subscribe, cfg, opts, conv)
}

func subscribe(t testing.TB, cfg redisstream.Config, opts broker.SubscribeOptions) <-chan broker.Delivery {
	t.Helper()
	return subscribeInto(t, cfg, opts, func(d broker.Delivery) broker.Delivery { return d })
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

// entries returns every entry of the stream.
func entries(t testing.TB, addr, stream string) []redis.XMessage {
	t.Helper()
	msgs, err := admin(t, addr).XRange(testCtx(t), stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", stream, err)
	}
	return msgs
}

// poison makes m's body larger than a private server's 1 MiB
// proto-max-bulk-len.
func poison(m *outbox.Message) {
	m.Body = []byte(`{"data":"` + strings.Repeat("x", 2<<20) + `"}`)
}

// isTransient reports whether err is a failure the relay retries.
func isTransient(err error) bool { return err != nil && !outbox.IsPermanent(err) }

var brokerAll = broker.SubscribeOptions{FromStart: true}

// logBuffer collects log lines, for tests of what the publisher logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// count counts the lines of level that contain msg.
func (b *logBuffer) count(level, msg string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.Contains(line, "level="+level) && strings.Contains(line, msg) {
			n++
		}
	}
	return n
}
