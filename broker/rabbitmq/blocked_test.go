package rabbitmq_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestBrokerBlocked raises a memory alarm on the machine's broker, which
// then stops reading from every publishing connection (so the test does
// not run in parallel with the others), and restores the watermark.
//
// A batch larger than the socket buffers gets stuck in its writes; once its
// context has ended, the publisher breaks the connection off instead of
// hanging. Later batches fail at once with ErrBlocked while the alarm
// lasts, and go through once it is over.
func TestBrokerBlocked(t *testing.T) {
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.Queue = ns.queue
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "before", 2, 1))

	old := strings.TrimSpace(rabbitmqctl(t, "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."))
	restore := []string{"set_vm_memory_high_watermark", old}
	if m := regexp.MustCompile(`^\{absolute,(\d+)\}$`).FindStringSubmatch(old); m != nil {
		restore = []string{"set_vm_memory_high_watermark", "absolute", m[1]}
	} else if !regexp.MustCompile(`^[0-9.]+$`).MatchString(old) {
		t.Skipf("cannot restore the memory watermark %q", old)
	}
	rabbitmqctl(t, "set_vm_memory_high_watermark", "0.000001")
	restored := false
	t.Cleanup(func() {
		if !restored {
			rabbitmqctl(t, restore...)
		}
	})

	// 64 MiB: more than loopback's socket buffers hold.
	stuck := publishertest.Batch(t, "stuck", 64, 1)
	for i := range stuck {
		stuck[i].Body = make([]byte, 1<<20)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	begin := time.Now()
	errs := p.Publish(ctx, stuck)
	cancel()
	t.Logf("a stuck batch returned after %s: %v", time.Since(begin), errs[len(errs)-1])
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("a batch stuck in its writes returned after %s", d)
	}
	for i, err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) || outbox.IsPermanent(err) {
			t.Fatalf("stuck message %d: %v, want a retryable error wrapping the deadline", i, err)
		}
	}

	// The broker tells the (new) connection it is blocked once it tries
	// to publish; from then on batches fail at once.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		begin := time.Now()
		errs := p.Publish(ctx, publishertest.Batch(t, "blocked", 2, 1))
		cancel()
		if errors.Is(errs[0], rabbitmq.ErrBlocked) {
			if d := time.Since(begin); d > 100*time.Millisecond {
				t.Fatalf("ErrBlocked took %s", d)
			}
			break
		}
		if errs[0] == nil || outbox.IsPermanent(errs[0]) {
			t.Fatalf("during the alarm: %v, want a retryable error", errs[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ErrBlocked 20s into the alarm: %v", errs[0])
		}
	}

	rabbitmqctl(t, restore...)
	restored = true
	deadline = time.Now().Add(20 * time.Second)
	for {
		errs := p.Publish(testCtx(t), publishertest.Batch(t, "after", 2, 1))
		if errs[0] == nil && errs[1] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 20s after the alarm: %v", errs[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
