package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// readAll reads the topic from its start until every message of want has
// arrived at least once, and returns everything read, in the order of each
// partition.
func readAll(t *testing.T, cfg kafka.Config, want []outbox.Message) []broker.Delivery {
	t.Helper()
	missing := make(map[string]bool, len(want))
	for _, m := range want {
		missing[m.ID.String()] = true
	}
	wanted := maps.Clone(missing)
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	var got []broker.Delivery
	add := func(d broker.Delivery) {
		if d.Err != nil {
			t.Fatalf("%s: %v", d.Where, d.Err)
		}
		if wanted[d.Event.ID] { // not the warm-up's
			got = append(got, d)
			delete(missing, d.Event.ID)
		}
	}
	for len(missing) > 0 {
		add(publishertest.Next(t, ch))
	}
	// Catch what arrives late: duplicates.
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case d := <-ch:
			add(d)
		case <-deadline:
			return got
		}
	}
}

// checkInOrder checks that each aggregate's events arrive in sequence
// order; a retried event may arrive twice, next to itself.
func checkInOrder(t *testing.T, cfg kafka.Config, want []outbox.Message) {
	t.Helper()
	last := map[string]int64{}
	for _, d := range readAll(t, cfg, want) {
		a, seq := d.Event.Subject, d.Event.Sequence
		if seq < last[a] {
			t.Fatalf("aggregate %s: sequence %d after %d (%s)", a, seq, last[a], d.Where)
		}
		last[a] = seq
	}
}

// checkExactlyInOrder checks that every message arrives exactly once and
// each aggregate's events in sequence order without gaps.
func checkExactlyInOrder(t *testing.T, cfg kafka.Config, want []outbox.Message) []broker.Delivery {
	t.Helper()
	got := readAll(t, cfg, want)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d (duplicates)", len(got), len(want))
	}
	last := map[string]int64{}
	for _, d := range got {
		a, seq := d.Event.Subject, d.Event.Sequence
		if seq != last[a]+1 {
			t.Fatalf("aggregate %s: sequence %d after %d (%s)", a, seq, last[a], d.Where)
		}
		last[a] = seq
	}
	return got
}

// TestPerAggregateOrderUnderConcurrency: several workers share one
// publisher, as the relay's do, each publishing the next event of its own
// aggregates in every call while the partitions' leaders are shuffled;
// every aggregate's events arrive once each, in order, all in one
// partition.
func TestPerAggregateOrderUnderConcurrency(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)

	const workers, aggregates, rounds = 4, 50, 20
	stopShuffle := make(chan struct{})
	shuffled := make(chan struct{})
	go func() {
		defer close(shuffled)
		for {
			select {
			case <-stopShuffle:
				return
			case <-time.After(20 * time.Millisecond):
				c.ShufflePartitionLeaders()
			}
		}
	}()
	var (
		mu  sync.Mutex
		all []outbox.Message
		wg  sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for seq := int64(1); seq <= rounds; seq++ {
				msgs := publishertest.Batch(t, fmt.Sprintf("w%d", w), aggregates, seq)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				errs := p.Publish(ctx, msgs)
				cancel()
				for i, err := range errs {
					if err != nil {
						t.Errorf("worker %d seq %d message %d: %v", w, seq, i, err)
						return
					}
				}
				mu.Lock()
				all = append(all, msgs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stopShuffle)
	<-shuffled
	if t.Failed() {
		return
	}
	partitionOf := map[string]string{}
	for _, d := range checkExactlyInOrder(t, cfg, all) {
		part, _, _ := strings.Cut(d.Where, "@") // topic/partition
		if prev, ok := partitionOf[d.Event.Subject]; ok && prev != part {
			t.Fatalf("aggregate %s in %s and %s", d.Event.Subject, prev, part)
		}
		partitionOf[d.Event.Subject] = part
	}
}
