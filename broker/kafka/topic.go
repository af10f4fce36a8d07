package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrTopicNotFound means the topic does not exist and Config.NoCreateTopic
// forbids creating it.
var ErrTopicNotFound = errors.New("kafka: topic not found")

// ensureTopic creates cfg.Topic when it is missing (unless NoCreateTopic);
// an existing topic is left as it is.
func ensureTopic(ctx context.Context, cl *kgo.Client, cfg Config) error {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(cfg.Topic)
	req.Topics = []kmsg.MetadataRequestTopic{t}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka: look up topic %s: %w", cfg.Topic, err)
	}
	if len(resp.Topics) != 1 {
		return fmt.Errorf("kafka: look up topic %s: %d topics in the answer", cfg.Topic, len(resp.Topics))
	}
	err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("kafka: look up topic %s: %w", cfg.Topic, err)
	case cfg.NoCreateTopic:
		return fmt.Errorf("%w: %s (create_topic=false)", ErrTopicNotFound, cfg.Topic)
	}
	return createTopic(ctx, cl, cfg)
}

func createTopic(ctx context.Context, cl *kgo.Client, cfg Config) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = int32(cfg.RequestTimeout.Milliseconds())
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic = cfg.Topic
	t.NumPartitions = cfg.Partitions
	t.ReplicationFactor = cfg.ReplicationFactor
	req.Topics = []kmsg.CreateTopicsRequestTopic{t}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka: create topic %s: %w", cfg.Topic, err)
	}
	if len(resp.Topics) != 1 {
		return fmt.Errorf("kafka: create topic %s: %d topics in the answer", cfg.Topic, len(resp.Topics))
	}
	err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) { // created concurrently
		msg := ""
		if m := resp.Topics[0].ErrorMessage; m != nil {
			msg = " (" + *m + ")"
		}
		return fmt.Errorf("kafka: create topic %s with %d partitions, replication factor %d: %w%s",
			cfg.Topic, cfg.Partitions, cfg.ReplicationFactor, err, msg)
	}
	cfg.Logger.Info("kafka: created topic", "topic", cfg.Topic, "partitions", cfg.Partitions, "replication_factor", cfg.ReplicationFactor)
	return nil
}

// topicMaxMessageBytes reads the topic's max.message.bytes: its own or, if
// it has none, the broker's message.max.bytes, which the answer reports.
func topicMaxMessageBytes(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	req := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType = kmsg.ConfigResourceTypeTopic
	r.ResourceName = topic
	r.ConfigNames = []string{"max.message.bytes"}
	req.Resources = []kmsg.DescribeConfigsRequestResource{r}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	for _, res := range resp.Resources {
		if err := kerr.ErrorForCode(res.ErrorCode); err != nil {
			return 0, err
		}
		for _, c := range res.Configs {
			if c.Name == "max.message.bytes" && c.Value != nil {
				n, err := strconv.ParseInt(*c.Value, 10, 32)
				if err != nil {
					return 0, fmt.Errorf("max.message.bytes %q: %w", *c.Value, err)
				}
				return int32(n), nil
			}
		}
	}
	return 0, errors.New("max.message.bytes not in the answer")
}
