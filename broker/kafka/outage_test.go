package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestBrokerOutage: while every broker is down Publish fails fast and
// retryably, well within its deadline; after a restart on the same ports
// the same Publisher succeeds again and nothing acked before is lost.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	before := publishertest.Batch(t, "before", 10, 1)
	publishOK(t, p, before)
	live := subscribe(t, cfg, broker.SubscribeOptions{}) // lives through the outage

	c.stop()
	during := publishertest.Batch(t, "during", 10, 1)
	for attempt := range 3 { // the first finds out, the later ones know
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		begin := time.Now()
		errs := p.Publish(ctx, during)
		elapsed := time.Since(begin)
		cancel()
		t.Logf("attempt %d during the outage failed in %s: %v", attempt, elapsed, errs[0])
		if elapsed > 2*time.Second {
			t.Fatalf("attempt %d: Publish during the outage took %s; it should fail fast", attempt, elapsed)
		}
		for i, err := range errs {
			switch {
			case err == nil:
				t.Fatalf("attempt %d: message %d acked with every broker down", attempt, i)
			case outbox.IsPermanent(err):
				t.Fatalf("attempt %d: message %d failed permanently: %v", attempt, i, err)
			case errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("attempt %d: message %d waited out its deadline: %v", attempt, i, err)
			}
		}
		if attempt > 0 && !errors.Is(errs[0], kafka.ErrUnreachable) {
			t.Fatalf("attempt %d: %v, want ErrUnreachable", attempt, errs[0])
		}
	}

	c.start(t)
	publishEventually(t, p, during)
	readAll(t, cfg, append(before, during...))
	want := map[string]bool{}
	for _, m := range during {
		want[m.ID.String()] = true
	}
	for len(want) > 0 {
		delete(want, publishertest.Next(t, live).Event.ID)
	}
}

// TestLeaderMovedMidBatch: the leaders of every partition move while the
// first produce request of a batch is on its way; the client follows them
// and every message is acked once, in order per aggregate.
func TestLeaderMovedMidBatch(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "warm", 3, 1)) // leaders known

	moved := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		for part := range int32(kafka.DefaultPartitions) {
			leader := c.LeaderFor(cfg.Topic, part)
			if err := c.MoveTopicPartition(cfg.Topic, part, (leader+1)%3); err != nil {
				t.Errorf("move partition %d: %v", part, err)
			}
		}
		close(moved)
		c.DropControl()        // once
		return nil, nil, false // the old leader handles it: NOT_LEADER_FOR_PARTITION
	})
	var all []outbox.Message
	for seq := int64(1); seq <= 3; seq++ {
		msgs := publishertest.Batch(t, "moved", 200, seq)
		publishOK(t, p, msgs)
		all = append(all, msgs...)
	}
	select {
	case <-moved:
	default:
		t.Fatal("no produce request went through the control function")
	}
	checkExactlyInOrder(t, cfg, all)
}

// TestBrokerStoppedMidBatch: one broker stops while a produce request is on
// its way to it (its connections are closed, its port refuses); the other
// two take over its partitions and every message is acked.
func TestBrokerStoppedMidBatch(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "warm", 3, 1))

	victim := int32(-1)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		victim = c.CurrentNode()
		if err := c.RemoveNode(victim); err != nil { // new leaders for its partitions
			t.Errorf("remove node %d: %v", victim, err)
		}
		// From now on every request that reaches it kills the
		// connection, as a dead broker would.
		c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			if c.CurrentNode() == victim {
				return nil, errors.New("broker stopped"), true
			}
			return nil, nil, false
		})
		return nil, errors.New("broker stopped"), true
	})
	var all []outbox.Message
	for seq := int64(1); seq <= 3; seq++ {
		msgs := publishertest.Batch(t, "stopped", 200, seq)
		publishEventually(t, p, msgs)
		all = append(all, msgs...)
	}
	if victim < 0 {
		t.Fatal("no produce request went through the control function")
	}
	checkInOrder(t, cfg, all)
}

// TestGiveUpThenPublishAgain: a broker that stalls makes Publish give up at
// its deadline, with records on the wire that the idempotent producer cannot
// drop; once the broker answers again, a later batch to the same partitions
// goes through (the producer's sequence numbers were not poisoned) and the
// given-up records are written at most once each.
func TestGiveUpThenPublishAgain(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "warm", 3, 1))

	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		<-release // stall this request, then let it through
		return nil, nil, false
	})
	stalled := publishertest.Batch(t, "stalled", 30, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	begin := time.Now()
	errs := p.Publish(ctx, stalled)
	cancel()
	if elapsed := time.Since(begin); elapsed > 2*time.Second {
		t.Fatalf("Publish took %s past its 300ms deadline", elapsed)
	}
	for i, err := range errs {
		if err == nil || outbox.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("stalled message %d: %v, want a retryable deadline error", i, err)
		}
	}
	close(release)

	later := publishertest.Batch(t, "later", 30, 1)
	publishEventually(t, p, later)
	publishEventually(t, p, stalled) // as the relay retries them

	counts := map[string]int{}
	for _, d := range readAll(t, cfg, append(later, stalled...)) {
		counts[d.Event.ID]++
	}
	// A given-up record and its retry may both be written: never more.
	for id, n := range counts {
		if n > 2 {
			t.Fatalf("event %s written %d times", id, n)
		}
	}
}
