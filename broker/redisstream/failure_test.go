package redisstream_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestPartialFailure: a body over the server's limit fails permanently,
// alone and unsent; the rest of its batch is added in order.
func TestPartialFailure(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cfg := uniqueConfig(t, srv.addr)
	p := connect(t, cfg)
	msgs := publishertest.Batch(t, "pf", 6, 1)
	poison(&msgs[1])
	poison(&msgs[4])
	errs := p.Publish(testCtx(t), msgs)
	for i, err := range errs {
		switch i {
		case 1, 4:
			if !outbox.IsPermanent(err) || !errors.Is(err, redisstream.ErrTooLarge) {
				t.Errorf("oversized message %d: %v, want a permanent ErrTooLarge", i, err)
			}
		default:
			if err != nil {
				t.Errorf("message %d beside the oversized ones: %v", i, err)
			}
		}
	}
	got := entries(t, srv.addr, cfg.Stream)
	want := []int{0, 2, 3, 5}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i, e := range got {
		if e.Values["id"] != msgs[want[i]].ID.String() {
			t.Fatalf("entry %d is %v, want message %d", i, e.Values["id"], want[i])
		}
	}
}

// TestMaxMessageBytes: a configured limit applies without asking the server.
func TestMaxMessageBytes(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	cfg.MaxMessageBytes = 2000
	p := connect(t, cfg)
	if p.MaxMessageBytes() != 2000 {
		t.Fatalf("MaxMessageBytes = %d, want 2000", p.MaxMessageBytes())
	}
	msgs := publishertest.Batch(t, "mmb", 3, 1)
	msgs[2].Body = []byte(`{"x":"` + strings.Repeat("y", 2000) + `"}`)
	errs := p.Publish(testCtx(t), msgs)
	if errs[0] != nil || errs[1] != nil || !outbox.IsPermanent(errs[2]) || !errors.Is(errs[2], redisstream.ErrTooLarge) {
		t.Fatalf("results %v, want nil, nil, permanent ErrTooLarge", errs)
	}
}

// TestLimitLoweredAfterConnect: when the server's proto-max-bulk-len is
// lowered under a running publisher, Redis closes the connection on the
// batch holding a longer body; the batch fails retryably, and the retry,
// which reads the limit again, refuses only that body.
func TestLimitLoweredAfterConnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--proto-max-bulk-len", "8mb")
	cfg := uniqueConfig(t, srv.addr)
	p := connect(t, cfg)
	if p.MaxMessageBytes() != 8<<20 {
		t.Fatalf("MaxMessageBytes = %d, want 8 MiB", p.MaxMessageBytes())
	}
	if err := admin(t, srv.addr).ConfigSet(testCtx(t), "proto-max-bulk-len", "1mb").Err(); err != nil {
		t.Fatal(err)
	}
	msgs := publishertest.Batch(t, "low", 4, 1)
	poison(&msgs[2])
	for i, err := range p.Publish(testCtx(t), msgs) {
		if err != nil && outbox.IsPermanent(err) && i != 2 {
			t.Fatalf("message %d failed permanently beside the oversized one: %v", i, err)
		}
	}
	errs := p.Publish(testCtx(t), msgs)
	for i, err := range errs {
		if i == 2 && (!outbox.IsPermanent(err) || !errors.Is(err, redisstream.ErrTooLarge)) {
			t.Fatalf("retry: oversized message: %v, want a permanent ErrTooLarge", err)
		}
		if i != 2 && err != nil {
			t.Fatalf("retry: message %d: %v", i, err)
		}
	}
	if p.MaxMessageBytes() != 1<<20 {
		t.Fatalf("MaxMessageBytes = %d after the retry, want 1 MiB", p.MaxMessageBytes())
	}
}

// TestWrongType: Connect refuses a key of another type; one that appears
// later fails publishes with ErrWrongType, retryable, until it is removed.
func TestWrongType(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	rdb := admin(t, cfg.Addr)
	if err := rdb.Set(testCtx(t), cfg.Stream, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if p, err := redisstream.Connect(testCtx(t), cfg); !errors.Is(err, redisstream.ErrWrongType) {
		if p != nil {
			_ = p.Close()
		}
		t.Fatalf("Connect to a string key: %v, want ErrWrongType", err)
	}
	if _, err := redisstream.Subscribe(testCtx(t), cfg, brokerAll, nil); !errors.Is(err, redisstream.ErrWrongType) {
		t.Fatalf("Subscribe to a string key: %v, want ErrWrongType", err)
	}
	if err := rdb.Del(testCtx(t), cfg.Stream).Err(); err != nil {
		t.Fatal(err)
	}
	p := connect(t, cfg)
	if err := rdb.HSet(testCtx(t), cfg.Stream, "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	msgs := publishertest.Batch(t, "wt", 3, 1)
	for i, err := range p.Publish(testCtx(t), msgs) {
		if !isTransient(err) || !errors.Is(err, redisstream.ErrWrongType) {
			t.Fatalf("message %d into a hash: %v, want a retryable ErrWrongType", i, err)
		}
	}
	if err := rdb.Del(testCtx(t), cfg.Stream).Err(); err != nil {
		t.Fatal(err)
	}
	publishOK(t, p, msgs)
}

// TestServerRefusals: READONLY (a replica after a failover), OOM and
// NOPERM fail every message retryably, and publishing works again once the
// server does.
func TestServerRefusals(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cfg := uniqueConfig(t, srv.addr)
	p := connect(t, cfg)
	rdb := admin(t, srv.addr)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name       string
		code       string
		fault, fix func() error
	}{
		{"replica", "READONLY",
			func() error { return rdb.ReplicaOf(ctx, "127.0.0.1", "1").Err() },
			func() error { return rdb.ReplicaOf(ctx, "NO", "ONE").Err() }},
		{"out of memory", "OOM",
			func() error { return rdb.ConfigSet(ctx, "maxmemory", "1").Err() },
			func() error { return rdb.ConfigSet(ctx, "maxmemory", "0").Err() }},
	} {
		if err := tc.fault(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		msgs := publishertest.Batch(t, tc.name, 3, 1)
		for i, err := range p.Publish(ctx, msgs) {
			if !isTransient(err) || !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("%s: message %d: %v, want a retryable %s error", tc.name, i, err, tc.code)
			}
		}
		if err := tc.fix(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		publishOK(t, p, msgs)
	}

	// A user that may do everything but XADD.
	if err := rdb.Do(ctx, "ACL", "SETUSER", "pub", "on", ">pubpw", "~*", "+@all", "-xadd").Err(); err != nil {
		t.Fatal(err)
	}
	limited := cfg
	limited.Username, limited.Password = "pub", "pubpw"
	lp := connect(t, limited)
	for i, err := range lp.Publish(ctx, publishertest.Batch(t, "noperm", 2, 1)) {
		if !isTransient(err) || !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("message %d without XADD permission: %v, want a retryable NOPERM error", i, err)
		}
	}
}
