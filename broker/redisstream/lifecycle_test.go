package redisstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestClose: Close waits for a batch in flight, which is acked; then
// Publish fails with ErrClosed, retryable; Close twice is fine, and the
// connections are gone.
func TestClose(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cfg := uniqueConfig(t, srv.addr)
	p, err := redisstream.Connect(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rdb := admin(t, srv.addr)
	const pause = 500 * time.Millisecond
	paused := time.Now()
	if err := rdb.Do(testCtx(t), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	published := make(chan []error, 1)
	go func() { published <- p.Publish(testCtx(t), publishertest.Batch(t, "inflight", 5, 1)) }()
	waitBlocked(t, rdb, cfg.ClientName)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close could not return before the server answered the batch, after
	// the pause; had it closed the connection under the batch, the batch
	// would have failed.
	if waited := time.Since(paused); waited < pause-50*time.Millisecond {
		t.Fatalf("Close returned %s after the pause began, before the batch in flight was answered", waited)
	}
	for i, err := range <-published {
		if err != nil {
			t.Fatalf("message %d in flight during Close: %v", i, err)
		}
	}
	for i, err := range p.Publish(testCtx(t), publishertest.Batch(t, "after", 2, 1)) {
		if !isTransient(err) || !errors.Is(err, redisstream.ErrClosed) {
			t.Fatalf("message %d after Close: %v, want a retryable ErrClosed", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	list, err := rdb.ClientList(testCtx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(list, " name="+cfg.ClientName+" ") {
		t.Fatalf("a connection of the closed publisher is still open:\n%s", list)
	}
}

// waitBlocked waits until a connection named name is blocked by the server
// (CLIENT PAUSE holds its command).
func waitBlocked(t *testing.T, rdb *redis.Client, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		list, err := rdb.ClientList(testCtx(t)).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " flags=b ") {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the publish never reached the server")
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begin := time.Now()
	// Port 1 on loopback: nothing listens there.
	p, err := redisstream.Connect(ctx, redisstream.Config{Addr: "127.0.0.1:1", Username: "u", Password: "s3cretpw"})
	if err == nil {
		_ = p.Close()
		t.Fatal("Connect to a closed port succeeded")
	}
	if time.Since(begin) > 2*time.Second {
		t.Fatalf("Connect to a closed port took %s", time.Since(begin))
	}
	if strings.Contains(err.Error(), "s3cretpw") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %q should name the server without the password", err)
	}
}

func TestConnectWrongPassword(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--requirepass", "right-password")
	cfg := uniqueConfig(t, srv.addr)
	cfg.Password = "wr0ng-secret"
	p, err := redisstream.Connect(testCtx(t), cfg)
	if err == nil {
		_ = p.Close()
		t.Fatal("Connect with a wrong password succeeded")
	}
	if !redis.IsAuthError(err) || strings.Contains(err.Error(), "wr0ng-secret") {
		t.Fatalf("error %q: want an auth error without the password", err)
	}
	cfg.Password = "right-password"
	p = connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "auth", 1, 1))
}

func TestInvalidConfigRefused(t *testing.T) {
	t.Parallel()
	for _, cfg := range []redisstream.Config{
		{Addr: "no-port"},
		{DB: -1},
		{MaxLen: -1},
		{MaxMessageBytes: -1},
		{ReadTimeout: -time.Second},
		{ClientName: "has space"},
	} {
		if p, err := redisstream.Connect(testCtx(t), cfg); err == nil {
			_ = p.Close()
			t.Fatalf("Connect with %s succeeded", cfg)
		}
	}
}
