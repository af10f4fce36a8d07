package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/outbox"
)

// verdict says what Publish does with a classified error.
type verdict int

const (
	final     verdict = iota // the error (or nil) is the message's result
	suspect                  // refused with its batch: try it alone (isolate)
	topicGone                // the topic is missing or was recreated: ask (topicGone)
)

// classify turns a record's outcome into Publish's error for it, and says
// whether that is the final word.
func (p *Publisher) classify(ctx context.Context, err error) (verdict, error) {
	switch {
	case err == nil:
		return final, nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if ctx.Err() != nil {
			return final, ctxError(ctx.Err())
		}
		// The client fails a partition's buffered records together when
		// the first one's context ends: another Publish call gave up.
		return final, fmt.Errorf("kafka: dropped with an earlier record of its partition whose publish was given up (%v)", err) //nolint:errorlint // another call's cancellation, not ours to claim
	case refusedWithBatch(err):
		return suspect, fmt.Errorf("kafka: topic %s refused the record: %w", p.cfg.Topic, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.InvalidTopicException):
		return final, outbox.Permanent(fmt.Errorf("kafka: topic %s: %w", p.cfg.Topic, err))
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return topicGone, fmt.Errorf("kafka: topic %s unknown to the broker: %w", p.cfg.Topic, err)
	case errors.Is(err, kgo.ErrRecordTimeout):
		return final, fmt.Errorf("kafka: not sent within the delivery timeout (%s): %w", p.cfg.DeliveryTimeout, err)
	case errors.Is(err, kgo.ErrClientClosed):
		return final, fmt.Errorf("kafka: publisher closing: %w", err)
	default:
		// Retriable broker errors (leader moved, not enough replicas…),
		// lost connections and anything unforeseen: the relay retries.
		return final, fmt.Errorf("kafka: %w", err)
	}
}

// topicGone is the error of the records the broker failed for an unknown
// topic (or topic id). It asks the broker once: a topic that is missing
// fails them permanently under NoCreateTopic, and is created again
// otherwise; a topic that exists was deleted and created again, under a new
// id the client does not adopt by itself. Either way the clients then
// forget the topic (the producing clients are replaced) and learn it anew
// on the next publish.
func (p *Publisher) topicGone(ctx context.Context, cause error) error {
	err := ensureTopic(ctx, p.cl, p.cfg)
	switch {
	case errors.Is(err, ErrTopicNotFound):
		return outbox.Permanent(fmt.Errorf("%w (%w)", err, cause))
	case err != nil:
		return fmt.Errorf("%w; looking it up: %w", cause, err)
	}
	p.cl.PurgeTopicsFromClient(p.cfg.Topic)
	p.gen.Add(1) // the producing clients are replaced by new ones
	p.cfg.Logger.Warn("kafka: the topic was deleted; the client follows the topic of that name now", "topic", p.cfg.Topic, "err", cause)
	return fmt.Errorf("%w; it is there again, retry", cause)
}

// refusedWithBatch reports a refusal of the record's whole batch for
// something one record of it may have caused: too large, invalid.
func refusedWithBatch(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) ||
		errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) ||
		errors.Is(err, kerr.CorruptMessage)
}

func ctxError(err error) error {
	return fmt.Errorf("kafka: waiting for acks: %w", err)
}
