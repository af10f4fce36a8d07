package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// BenchmarkPublish publishes batches of 500 events of distinct aggregates,
// as the relay does with its default batch size, through the Publisher and
// through the tightest plain franz-go loop that gives the same guarantee
// (the same records, idempotent, acks from all in-sync replicas, awaited
// per batch, records built once and reused), and reports acknowledged
// messages per second; Interleaved measures both in one loop and reports
// their ratio (plain time / Publisher time: 1 means no overhead).
//
// The brokers are kfake, franz-go's in-process fake Kafka, on the same
// machine: the figures measure the client side, not Kafka's.
//
//	go test -run '^$' -bench Publish -benchtime 5s ./broker/kafka/
func BenchmarkPublish(b *testing.B) {
	const batch = 500
	b.Run("Publisher", func(b *testing.B) {
		publish := publisherLoop(b, benchConfig(b), batch)
		b.ReportAllocs()
		for b.Loop() {
			publish()
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("PlainLoop", func(b *testing.B) {
		publish := plainLoop(b, benchConfig(b), batch)
		b.ReportAllocs()
		for b.Loop() {
			publish()
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
	})
	// Interleaved runs a batch of each in every iteration, on one cluster,
	// timing each: the machine's load drifts alike for both, so their
	// ratio is the figure to trust on a shared machine.
	b.Run("Interleaved", func(b *testing.B) {
		cfg := benchConfig(b)
		pub := publisherLoop(b, cfg, batch)
		cfg.Topic = "bench-plain"
		plain := plainLoop(b, cfg, batch)
		var tPub, tPlain time.Duration
		for b.Loop() {
			start := time.Now()
			pub()
			mid := time.Now()
			plain()
			tPub, tPlain = tPub+mid.Sub(start), tPlain+time.Since(mid)
		}
		n := float64(b.N * batch)
		b.ReportMetric(n/tPub.Seconds(), "publisher-msgs/s")
		b.ReportMetric(n/tPlain.Seconds(), "plain-msgs/s")
		b.ReportMetric(tPlain.Seconds()/tPub.Seconds(), "ratio")
	})
}

// publisherLoop returns one iteration of the Publisher's benchmark: a
// batch of n events published and every ack awaited.
func publisherLoop(b *testing.B, cfg kafka.Config, n int) func() {
	p := connect(b, cfg)
	msgs := publishertest.Batch(b, "bench", n, 1)
	ctx := context.Background()
	return func() {
		for i, err := range p.Publish(ctx, msgs) {
			if err != nil {
				b.Fatalf("message %d: %v", i, err)
			}
		}
	}
}

// plainLoop returns one iteration of the plain loop: the same records,
// built once, produced by a franz-go client configured as the Publisher's
// (idempotent, acks from all in-sync replicas, no linger, no compression),
// every ack awaited.
func plainLoop(b *testing.B, cfg kafka.Config, n int) func() {
	connect(b, cfg) // creates the topic as for the Publisher
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	recs := plainRecords(publishertest.Batch(b, "bench", n, 1))
	ctx := context.Background()
	return func() {
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchConfig starts an in-memory cluster of three brokers for a
// benchmark: nothing written to disk, so the client is what is measured.
func benchConfig(b *testing.B) kafka.Config {
	kc, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kc.Close)
	return kafka.Config{Brokers: kc.ListenAddrs(), Topic: "bench", Logger: testLogger()}
}

// plainRecords are the records the Publisher sends for msgs.
func plainRecords(msgs []outbox.Message) []*kgo.Record {
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		id, _ := m.ID.MarshalText()
		recs[i] = &kgo.Record{
			Key:   []byte(m.AggregateID),
			Value: m.Body,
			Headers: []kgo.RecordHeader{
				{Key: "content-type", Value: []byte("application/cloudevents+json")},
				{Key: "ce_id", Value: id},
				{Key: "ce_type", Value: []byte(m.Type)},
				{Key: "traceparent", Value: []byte(m.Headers["traceparent"])},
			},
		}
	}
	return recs
}

// BenchmarkPublishRun publishes runs of 500 events of one aggregate, as
// the relay does with a hot aggregate when the publisher keeps runs, and
// reports acknowledged events per second. Every run is one partition's.
//
//	go test -run '^$' -bench PublishRun -benchtime 5s ./broker/kafka/
func BenchmarkPublishRun(b *testing.B) {
	const n = 500
	p := connect(b, benchConfig(b))
	if !p.KeepsRuns() {
		b.Fatal("KeepsRuns is false")
	}
	ctx := context.Background()
	seq := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		msgs := publishertest.AggregateRun(b, "hot", seq+1, seq+n)
		seq += n
		b.StartTimer()
		for i, err := range p.Publish(ctx, msgs) {
			if err != nil {
				b.Fatalf("message %d: %v", i, err)
			}
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}
