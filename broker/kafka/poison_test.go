package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestPartialFailure: several records over the topic's limit in one batch
// fail permanently, each alone; the rest are acked and readable, and the
// producer goes on.
func TestPartialFailure(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	if err := c.CreateTopic(cfg.Topic, 3, map[string]string{"max.message.bytes": "65536"}); err != nil {
		t.Fatal(err)
	}
	p := connect(t, cfg)
	msgs := publishertest.Batch(t, "partial", 40, 1)
	poisoned := map[int]bool{0: true, 17: true, 39: true}
	for i := range poisoned {
		poison(&msgs[i])
	}
	checkPoisoned(t, p.Publish(testCtx(t), msgs), poisoned, kerr.MessageTooLarge)
	var good []outbox.Message
	for i, m := range msgs {
		if !poisoned[i] {
			good = append(good, m)
		}
	}
	checkExactlyInOrder(t, cfg, good)
	publishOK(t, p, publishertest.Batch(t, "after", 40, 2)) // the producer goes on
}

// checkPoisoned checks that exactly the poisoned messages failed, each
// permanently with want.
func checkPoisoned(t *testing.T, errs []error, poisoned map[int]bool, want error) {
	t.Helper()
	for i, err := range errs {
		switch {
		case poisoned[i] && (!outbox.IsPermanent(err) || !errors.Is(err, want)):
			t.Errorf("poisoned message %d: %v, want a permanent %v", i, err, want)
		case !poisoned[i] && err != nil:
			t.Errorf("message %d failed beside the poisoned ones: %v", i, err)
		}
	}
}

// TestLimitLoweredAfterConnect: the topic's max.message.bytes is lowered
// under a running publisher, so the broker refuses a whole batch for one
// record in it; every batch-mate is tried again alone and acked, and only
// the oversized record fails permanently.
func TestLimitLoweredAfterConnect(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg) // reads the default limit, 1 MiB
	alterTopic(t, cfg, "max.message.bytes", "65536")

	msgs := publishertest.Batch(t, "lowered", 30, 1)
	poisoned := map[int]bool{5: true}
	poison(&msgs[5]) // 128 KiB: under the old limit, over the new
	msgs[5].AggregateID = "too-large"
	sent := c.Fault(kfake.Fault{
		Keys:    []kmsg.Key{kmsg.Produce},
		Observe: true,
		Count:   -1,
		When:    func(req kmsg.Request) bool { return carriesKey(req, "too-large") },
	})
	checkPoisoned(t, p.Publish(testCtx(t), msgs), poisoned, kerr.MessageTooLarge)
	if sent.Hits() == 0 {
		t.Fatal("the oversized record never reached the broker: the client refused it, not the broker")
	}
	var good []outbox.Message
	for i, m := range msgs {
		if !poisoned[i] {
			good = append(good, m)
		}
	}
	checkExactlyInOrder(t, cfg, good)
}

// alterTopic sets one config of cfg's topic.
func alterTopic(t *testing.T, cfg kafka.Config, name, value string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType = kmsg.ConfigResourceTypeTopic
	r.ResourceName = cfg.Topic
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = name, kmsg.StringPtr(value)
	r.Configs = append(r.Configs, c)
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range resp.Resources {
		if err := kerr.ErrorForCode(res.ErrorCode); err != nil {
			t.Fatalf("alter %s=%s: %v", name, value, err)
		}
	}
}

// TestInvalidRecord: the broker refuses as invalid every produce request
// that carries one particular record (its whole batch, every partition of
// the request). The others are acked after being tried alone; that record
// fails permanently, and later batches go through.
func TestInvalidRecord(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "warm", 3, 1))

	msgs := publishertest.Batch(t, "invalid", 30, 1)
	msgs[12].AggregateID = "refuse-me"
	c.Fault(kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Topic: cfg.Topic,
		Err:   kerr.InvalidRecord,
		Count: -1,
		When:  func(req kmsg.Request) bool { return carriesKey(req, "refuse-me") },
	})
	checkPoisoned(t, p.Publish(testCtx(t), msgs), map[int]bool{12: true}, kerr.InvalidRecord)
	publishOK(t, p, publishertest.Batch(t, "after", 30, 2))
}

// carriesKey reports whether a produce request carries a record keyed key.
func carriesKey(req kmsg.Request, key string) bool {
	pr, ok := req.(*kmsg.ProduceRequest)
	if !ok {
		return false
	}
	for _, t := range pr.Topics {
		for _, p := range t.Partitions {
			var b kmsg.RecordBatch
			if err := b.ReadFrom(p.Records); err != nil {
				continue
			}
			recs, err := kfake.BatchRecords(b)
			if err != nil {
				continue
			}
			for _, r := range recs {
				if string(r.Key) == key {
					return true
				}
			}
		}
	}
	return false
}

// TestClassification: what the broker answers decides whether an error is
// permanent; retriable errors are retried by the client until the
// context ends.
func TestClassification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err       *kerr.Error
		permanent bool
	}{
		{kerr.TopicAuthorizationFailed, true},
		{kerr.NotEnoughReplicas, false},
		{kerr.KafkaStorageError, false},
		{kerr.PolicyViolation, false},
	} {
		t.Run(tc.err.Message, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t)
			cfg := config(c)
			p := connect(t, cfg)
			c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: cfg.Topic, Err: tc.err, Count: -1})
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			for i, err := range p.Publish(ctx, publishertest.Batch(t, "class", 5, 1)) {
				if err == nil || outbox.IsPermanent(err) != tc.permanent {
					t.Fatalf("message %d: %v, want permanent=%t", i, err, tc.permanent)
				}
			}
		})
	}
}
