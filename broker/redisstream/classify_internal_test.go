package redisstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/heraldhq/herald/outbox"
)

// reply is an error reply as go-redis returns it.
type reply string

func (r reply) Error() string { return string(r) }
func (reply) RedisError()     {}

func testPublisher(log *slog.Logger) *Publisher {
	cfg := Config{Stream: "s", Logger: log}.withDefaults()
	return &Publisher{cfg: cfg, health: newHealth(cfg.Logger, cfg.Addr)}
}

func TestClassifyReplies(t *testing.T) {
	t.Parallel()
	p := testPublisher(nil)
	ctx := context.Background()
	for _, tc := range []struct {
		err       error
		permanent bool
		is        error
	}{
		{reply("ERR Protocol error: invalid bulk length"), true, ErrTooLarge},
		{reply("WRONGTYPE Operation against a key holding the wrong kind of value"), false, ErrWrongType},
		{reply("LOADING Redis is loading the dataset in memory"), false, nil},
		{reply("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT."), false, nil},
		{reply("READONLY You can't write against a read only replica."), false, nil},
		{reply("OOM command not allowed when used memory > 'maxmemory'."), false, nil},
		{reply("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), false, nil},
		{reply("NOAUTH Authentication required."), false, nil},
		{reply("WRONGPASS invalid username-password pair or user is disabled."), false, nil},
		{reply("NOPERM User u has no permissions to run the 'xadd' command"), false, nil},
		{reply("ERR syntax error"), false, nil},
		{reply("ERR unknown command 'XADD', with args beginning with: "), false, nil},
		{reply("ERR The stream has exhausted the last possible ID, unable to add more items"), false, nil},
		{fmt.Errorf("wrapped: %w", reply("ERR Protocol error: invalid bulk length")), true, ErrTooLarge},
		{io.EOF, false, ErrUnavailable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false, ErrUnavailable},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, false, ErrUnavailable},
		{&net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}, false, ErrUnavailable},
		{errors.New("redis: connection pool timeout"), false, ErrUnavailable},
	} {
		err := p.classify(ctx, tc.err)
		if err == nil {
			t.Fatalf("%v: classified as success", tc.err)
		}
		if outbox.IsPermanent(err) != tc.permanent {
			t.Errorf("%v: permanent = %v, want %v (%v)", tc.err, outbox.IsPermanent(err), tc.permanent, err)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%v: %v does not wrap %v", tc.err, err, tc.is)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: %v does not wrap the original error", tc.err, err)
		}
	}
	if err := p.classify(ctx, nil); err != nil {
		t.Fatalf("classify(nil) = %v", err)
	}
}

// TestClassifyContext: without a reply, an ended context is the cause, and
// the error wraps it, never Permanent; a reply still counts.
func TestClassifyContext(t *testing.T) {
	t.Parallel()
	p := testPublisher(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	err := p.classify(ctx, timeout)
	if !errors.Is(err, context.Canceled) || outbox.IsPermanent(err) {
		t.Fatalf("timeout after cancel: %v, want a retryable error wrapping context.Canceled", err)
	}
	if err := p.classify(ctx, reply("ERR Protocol error: invalid bulk length")); !outbox.IsPermanent(err) {
		t.Fatalf("a reply after cancel: %v, want it classified as a reply", err)
	}
}

// TestHealthLogsTransitions: a run of failures of one kind logs once, and
// the first success after it logs the recovery.
func TestHealthLogsTransitions(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := testPublisher(slog.New(slog.NewTextHandler(&buf, nil)))
	ctx := context.Background()
	for range 5 {
		_ = p.classify(ctx, io.EOF)
	}
	p.health.ok()
	p.health.ok()
	for range 3 {
		_ = p.classify(ctx, reply("WRONGTYPE Operation against a key holding the wrong kind of value"))
	}
	_ = p.classify(ctx, reply("READONLY You can't write against a read only replica."))
	p.health.ok()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"level=WARN", "level=INFO", "level=ERROR", "level=WARN", "level=INFO"}
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s, want %s", i, lines[i], w)
		}
	}
}
