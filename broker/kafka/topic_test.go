package kafka_test

import (
	"errors"
	"testing"

	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestNoCreateTopic: Connect refuses a missing topic; a topic deleted
// under a running publisher fails its messages permanently.
func TestNoCreateTopic(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	cfg.NoCreateTopic = true
	if p, err := kafka.Connect(testCtx(t), cfg); !errors.Is(err, kafka.ErrTopicNotFound) {
		if err == nil {
			_ = p.Close()
		}
		t.Fatalf("Connect to a missing topic: %v, want ErrTopicNotFound", err)
	}
	if c.TopicInfo(cfg.Topic) != nil {
		t.Fatal("the topic was created")
	}
	if err := c.CreateTopic(cfg.Topic, 3, nil); err != nil {
		t.Fatal(err)
	}
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "there", 3, 1))
	if err := c.DeleteTopic(cfg.Topic); err != nil {
		t.Fatal(err)
	}
	errs := p.Publish(testCtx(t), publishertest.Batch(t, "gone", 3, 1))
	for i, err := range errs {
		if !outbox.IsPermanent(err) || !errors.Is(err, kafka.ErrTopicNotFound) {
			t.Fatalf("message %d to a deleted topic: %v, want a permanent ErrTopicNotFound", i, err)
		}
	}
}

// TestTopicRecreated: with topic creation on, a topic deleted under a
// running publisher fails retryably, then is created again and followed
// under its new topic id.
func TestTopicRecreated(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "there", 3, 1))
	if err := c.DeleteTopic(cfg.Topic); err != nil {
		t.Fatal(err)
	}
	msgs := publishertest.Batch(t, "again", 3, 1)
	publishEventually(t, p, msgs)
	if c.TopicInfo(cfg.Topic) == nil {
		t.Fatal("topic not recreated")
	}
	readAll(t, cfg, msgs)
}
