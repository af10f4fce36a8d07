package natsjs_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/outbox/publishertest"
)

// BenchmarkPublishBatch publishes batches of 500 events of distinct
// aggregates, as the relay does with its default batch size, and reports
// acknowledged messages per second.
//
//	go test -run '^$' -bench PublishBatch ./broker/natsjs/
func BenchmarkPublishBatch(b *testing.B) {
	const batch = 500
	for _, bc := range []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"embedded", func(b *testing.B) string { return startEmbedded(b).ClientURL() }},
		{"local", func(*testing.B) string { return localURL() }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			url := bc.url(b)
			p := connect(b, url, uniqueConfig(b, url))
			msgs := publishertest.Batch(b, "bench", batch, 1)
			ctx := testCtx(b)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for i := range msgs {
					msgs[i].ID = uuid.Must(uuid.NewV7()) // new ids, or JetStream drops them as duplicates
				}
				for i, err := range p.Publish(ctx, msgs) {
					if err != nil {
						b.Fatalf("message %d: %v", i, err)
					}
				}
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkPublishRun publishes runs of 500 events of one aggregate, as
// the relay does with a hot aggregate when the publisher keeps runs (one
// atomic batch each), on the embedded server (the machine's 2.9 server
// has no atomic batches), and reports acknowledged events per second.
//
//	go test -run '^$' -bench PublishRun ./broker/natsjs/
func BenchmarkPublishRun(b *testing.B) {
	const n = 500
	url := startEmbedded(b).ClientURL()
	p := connect(b, url, uniqueConfig(b, url))
	if !p.KeepsRuns() {
		b.Fatal("KeepsRuns is false on the embedded server")
	}
	ctx := testCtx(b)
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
