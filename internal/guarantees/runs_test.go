package guarantees_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	brk "github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
)

// Hot aggregates: an aggregate with a long backlog drains in runs (several
// of its events in one batch) when the publisher keeps them — Kafka's
// idempotent producer here. These tests hold G2, G3 and G5 for such runs:
// relays racing on one database, and a broker outage in the middle.

// kafkaCluster is a private kfake cluster (a Kafka protocol server in
// process) with a topic of the test's own, read from the start by a
// subscription that lives as long as the test. It keeps its data across
// down and up.
type kafkaCluster struct {
	*subscribedBroker
	kc    *kfake.Cluster
	ports []int
	dir   string
}

func newKafkaCluster(t *testing.T) *kafkaCluster {
	t.Helper()
	k := &kafkaCluster{dir: t.TempDir()}
	kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.DataDir(k.dir))
	if err != nil {
		t.Fatal(err)
	}
	k.kc = kc
	for _, a := range kc.ListenAddrs() {
		_, port, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(port)
		k.ports = append(k.ports, n)
	}
	t.Cleanup(func() { k.kc.Close() })
	cfg := kafka.Config{Brokers: kc.ListenAddrs(), Topic: "herald-g-" + randomName(), Partitions: 4}
	k.subscribedBroker = &subscribedBroker{connect: func(ctx context.Context) (outbox.Publisher, error) { return kafka.Connect(ctx, cfg) }}
	// The first publisher makes the topic; the subscription reads it.
	first := k.publisher(t)
	if rp, ok := first.(outbox.RunPublisher); !ok || !rp.KeepsRuns() {
		t.Fatal("the Kafka publisher does not keep runs: these tests would prove nothing about them")
	}
	subscribe(t, k.subscribedBroker, func(ctx context.Context) (func(), error) {
		return kafka.Subscribe(ctx, cfg, brk.SubscribeOptions{FromStart: true}, k.add)
	})
	return k
}

func (k *kafkaCluster) down(*testing.T) { k.kc.Close() }

func (k *kafkaCluster) up(t *testing.T) {
	t.Helper()
	var err error
	for range 50 { // the ports may take a moment to free
		var kc *kfake.Cluster
		if kc, err = kfake.NewCluster(kfake.Ports(k.ports...), kfake.DataDir(k.dir)); err == nil {
			k.kc = kc
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("kfake restart: %v", err)
}

// publisher returns a publisher that counts acks and still keeps runs.
func (k *kafkaCluster) publisher(t *testing.T) outbox.Publisher {
	t.Helper()
	return runCounter{ackCounter: k.subscribedBroker.publisher(t).(*ackCounter)}
}

type runCounter struct{ *ackCounter }

func (r runCounter) KeepsRuns() bool {
	rp, ok := r.Publisher.(outbox.RunPublisher)
	return ok && rp.KeepsRuns()
}

// produceHot writes hot aggregates' events in transactions of up to ten,
// beside cold aggregates of a few events each.
func produceHot(ctx context.Context, t *testing.T, b *backend, l *ledger, prefix string, hot, perHot int) {
	t.Helper()
	produce(ctx, t, b, l, prefix+"-cold", 20, 5)
	for h := range hot {
		agg := fmt.Sprintf("%s-hot-%d", prefix, h)
		for i := 0; i < perHot; i += 10 {
			events := make([]outbox.Event, min(10, perHot-i))
			for j := range events {
				events[j] = newEvent(t, agg, i+j)
			}
			if err := b.enqueue(ctx, events...); err != nil {
				t.Fatalf("enqueue: %v", err)
			}
			l.add(events...)
		}
	}
}

// G3 on hot aggregates: relays racing on one database hand each aggregate's
// events over in order, runs included, and the broker keeps that order.
func TestG3HotAggregatesWithRacingRelays(t *testing.T) {
	t.Parallel()
	for name, newBackend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			k := newKafkaCluster(t)
			guard := newOrderGuard(t, k.publisher(t))
			l := newLedger()
			produceHot(context.Background(), t, b, l, "g", 2, 600)
			for range 3 {
				runRelay(t, guard.store(b.openStore(t)), guard, outbox.RelayConfig{BatchSize: 100, Workers: 2})
			}
			v, _ := expectDelivered(t, b.store, k, l)
			if v.duplicates != 0 {
				t.Fatalf("%d duplicates without any crash", v.duplicates)
			}
			if name == "postgres" && guard.runEvents() == 0 {
				t.Fatal("no run was handed over: the test proved nothing about runs")
			}
		})
	}
}

// G2 and G3 on hot aggregates across a broker outage: runs cut short by
// the outage lose nothing and arrive in order (repeats carry their id).
func TestG2HotAggregatesAcrossBrokerOutage(t *testing.T) {
	t.Parallel()
	for name, newBackend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			k := newKafkaCluster(t)
			guard := newOrderGuard(t, k.publisher(t))
			r := runRelay(t, guard.store(b.store), guard, outbox.RelayConfig{
				BatchSize: 100, Workers: 2, PublishTimeout: 2 * time.Second,
				Retry: outbox.RetryPolicy{Base: 10 * time.Millisecond, Cap: 200 * time.Millisecond, MaxAttempts: 1000},
			})
			l := newLedger()
			ctx := context.Background()
			produceHot(ctx, t, b, l, "before", 1, 300)
			waitUntil(t, "events before the outage on the broker", func() bool { return r.Counters().Published > 0 })
			k.down(t)
			produceHot(ctx, t, b, l, "during", 2, 300)
			waitUntil(t, "the relay to meet the outage", func() bool { return r.Counters().Outages > 0 || r.Counters().Retried > 0 })
			time.Sleep(300 * time.Millisecond)
			k.up(t)
			produceHot(ctx, t, b, l, "after", 1, 300)
			waitDrained(t, b.store)
			st, err := b.store.Stats(ctx)
			if err != nil || st.DeadLetters != 0 {
				t.Fatalf("dead letters after the outage: %d (err %v)", st.DeadLetters, err)
			}
			received, _ := dedupe(t, k.received(t))
			v := l.check(received)
			v.assertClean(t)
			if name == "postgres" && guard.runEvents() == 0 {
				t.Fatal("no run was handed over: the test proved nothing about runs")
			}
		})
	}
}
