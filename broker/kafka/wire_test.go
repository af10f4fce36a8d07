package kafka_test

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestWireFormat: key, value and headers of a record, with and without a
// trace context.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)

	rec := publishertest.NewRecord("order-7", 3)
	rec.Type = "line_item.status_changed"
	rec.Headers = map[string]string{
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"tracestate":  "congo=t61rcWkgMzE",
	}
	plain := publishertest.NewRecord("order-8", 1)
	plain.Headers = nil
	msgs := []outbox.Message{publishertest.NewMessage(t, rec), publishertest.NewMessage(t, plain)}
	publishOK(t, p, msgs)

	got := map[string]*kgo.Record{}
	for _, r := range consumeRaw(t, cfg, 2) {
		got[string(r.Key)] = r
	}
	r := got["order-7"]
	if r == nil {
		t.Fatalf("no record keyed order-7: %v", got)
	}
	if !bytes.Equal(r.Value, msgs[0].Body) {
		t.Fatalf("value %s, want the body exactly: %s", r.Value, msgs[0].Body)
	}
	want := map[string]string{
		"content-type": "application/cloudevents+json",
		"ce_id":        rec.ID.String(),
		"ce_type":      "line_item.status_changed",
		"traceparent":  rec.Headers["traceparent"],
		"tracestate":   rec.Headers["tracestate"],
	}
	if len(r.Headers) != len(want) {
		t.Fatalf("headers %v, want %v", r.Headers, want)
	}
	for _, h := range r.Headers {
		if want[h.Key] != string(h.Value) {
			t.Errorf("header %s = %q, want %q", h.Key, h.Value, want[h.Key])
		}
	}
	for _, h := range got["order-8"].Headers {
		if h.Key == "traceparent" || h.Key == "tracestate" {
			t.Fatalf("event without trace context got header %s", h.Key)
		}
	}
}

// consumeRaw reads n records of cfg's topic from its start with a plain
// franz-go consumer.
func consumeRaw(t *testing.T, cfg kafka.Config, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumeTopics(cfg.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t)
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(recs), n, err)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// TestDefaultTopic: the zero Config's topic is outbox.events, created with
// three partitions.
func TestDefaultTopic(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	p := connect(t, kafka.Config{Brokers: c.addrs})
	if got := p.Config().Topic; got != "outbox.events" {
		t.Fatalf("topic %q", got)
	}
	if n := len(c.PartitionInfos("outbox.events")); n != 3 {
		t.Fatalf("outbox.events has %d partitions, want 3", n)
	}
	publishOK(t, p, publishertest.Batch(t, "default", 3, 1))
}

// TestCreateTopicSettings: a missing topic is created with the configured
// partitions and replication factor; an existing one is left as it is.
func TestCreateTopicSettings(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	cfg.Partitions, cfg.ReplicationFactor = 5, 2
	connect(t, cfg)
	if n := len(c.PartitionInfos(cfg.Topic)); n != 5 {
		t.Fatalf("%d partitions, want 5", n)
	}
	if info := c.TopicInfo(cfg.Topic); info.NumReplicas != 2 {
		t.Fatalf("%d replicas, want 2", info.NumReplicas)
	}
	// An existing topic is left as it is.
	cfg.Partitions = 7
	connect(t, cfg)
	if n := len(c.PartitionInfos(cfg.Topic)); n != 5 {
		t.Fatalf("existing topic now has %d partitions, want 5 kept", n)
	}
}

// TestBatchRoundTrips: a batch travels in a few produce requests per
// broker, pipelined, not one per message. (Unloaded, one or two per broker:
// the client sends what it holds at once and the rest as the first
// requests are under way, so a slow machine sees a few more.)
func TestBatchRoundTrips(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "warm", 3, 1))
	requests := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Observe: true, Count: -1})
	publishOK(t, p, publishertest.Batch(t, "round", 500, 1))
	n := requests.Hits()
	t.Logf("500 messages took %d produce requests to 3 brokers", n)
	if n > 50 {
		t.Fatalf("500 messages took %d produce requests to 3 brokers", n)
	}
}
