package redisstream_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestBrokerOutage: while Redis is down, Publish fails at once and
// retryably; once it is back the same Publisher succeeds, and nothing
// acknowledged before is lost. The outage and the recovery log one line
// each.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cfg := uniqueConfig(t, srv.addr)
	logs := &logBuffer{}
	cfg.Logger = logs.logger()
	p := connect(t, cfg)
	before := publishertest.Batch(t, "before", 10, 1)
	publishOK(t, p, before)

	srv.halt(syscall.SIGKILL)
	during := publishertest.Batch(t, "during", 10, 1)
	for attempt := range 30 { // past the pool size, which opens go-redis's dial breaker
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		begin := time.Now()
		errs := p.Publish(ctx, during)
		elapsed := time.Since(begin)
		cancel()
		if elapsed > time.Second {
			t.Fatalf("attempt %d: Publish during the outage took %s; it should fail at once", attempt, elapsed)
		}
		for i, err := range errs {
			if !isTransient(err) || !errors.Is(err, redisstream.ErrUnavailable) {
				t.Fatalf("attempt %d, message %d during the outage: %v, want a retryable ErrUnavailable", attempt, i, err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("message %d waited out its deadline: %v", i, err)
			}
		}
		if attempt == 0 {
			t.Logf("attempt %d failed in %s: %v", attempt, elapsed, errs[0])
		}
	}

	srv.start()
	begin := time.Now()
	for {
		failed := 0
		for _, err := range p.Publish(testCtx(t), during) {
			if err != nil {
				failed++
				if outbox.IsPermanent(err) {
					t.Fatalf("after the restart: %v", err)
				}
			}
		}
		if failed == 0 {
			break
		}
		if time.Since(begin) > 20*time.Second {
			t.Fatal("Publish still failing 20s after the restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("publishing again %s after the restart", time.Since(begin))

	got := entries(t, srv.addr, cfg.Stream)
	if len(got) != 20 {
		t.Fatalf("%d entries after the restart, want 20", len(got))
	}
	for i, m := range append(before, during...) {
		if got[i].Values["id"] != m.ID.String() {
			t.Fatalf("entry %d is %v, want %s", i, got[i].Values["id"], m.ID)
		}
	}
	if warn, info := logs.count("WARN", "connection to Redis lost"), logs.count("INFO", "publishing to Redis again"); warn != 1 || info != 1 {
		t.Fatalf("logged %d losses and %d recoveries, want 1 each:\n%s", warn, info, logs)
	}
}

// TestContextDeadlineInFlight: a batch on the wire when its deadline passes
// fails with an error wrapping context.DeadlineExceeded, soon after it.
func TestContextDeadlineInFlight(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cfg := uniqueConfig(t, srv.addr)
	p := connect(t, cfg)
	rdb := admin(t, srv.addr)
	if err := rdb.Do(testCtx(t), "CLIENT", "PAUSE", "5000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	errs := p.Publish(ctx, publishertest.Batch(t, "slow", 3, 1))
	if elapsed := time.Since(begin); elapsed > 1500*time.Millisecond {
		t.Fatalf("Publish took %s with a 300ms deadline", elapsed)
	}
	for i, err := range errs {
		if !isTransient(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("message %d: %v, want a retryable error wrapping context.DeadlineExceeded", i, err)
		}
	}
	if err := rdb.Do(testCtx(t), "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	publishOK(t, p, publishertest.Batch(t, "fast", 3, 1))
}
