package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// Subscribe reads the topic of cfg with a consumer of its own (no group,
// nothing committed, nothing left on the brokers) and calls fn for each
// record, one at a time, in order within each partition: so in order per
// aggregate, not across aggregates. The topic is created if it does not
// exist yet (unless NoCreateTopic); an existing one is left as it is. ctx
// bounds the setup only.
//
// With opts.FromStart it reads every record the topic still holds, and
// partitions added later too; otherwise each partition of the moment from
// its end as Subscribe returns. With opts.Types, records of other types
// (by their ce_type header, or their body's type) are skipped, and so are
// records that are no CloudEvent; without, those are delivered with Err
// set.
//
// stop ends the subscription and returns once fn has returned for the last
// time; it is idempotent and must not be called from fn. The consumer
// survives broker outages, resuming after the last record it delivered.
func Subscribe(ctx context.Context, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (stop func(), err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	base, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}
	start, err := startOffsets(ctx, base, cfg, opts.FromStart)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(base, start)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	pctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		consume(pctx, cl, cfg, opts, fn)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			cl.Close()
		})
	}, nil
}

// startOffsets creates the topic if need be, and returns the consumer
// option that starts where opts asks.
func startOffsets(ctx context.Context, base []kgo.Opt, cfg Config, fromStart bool) (kgo.Opt, error) {
	admin, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	defer admin.Close()
	if err := ensureTopic(ctx, admin, cfg); err != nil {
		return nil, err
	}
	if fromStart {
		return kgo.ConsumeTopics(cfg.Topic), nil // reset offset: the start, by default
	}
	ends, err := endOffsets(ctx, admin, cfg.Topic)
	if err != nil {
		return nil, err
	}
	at := make(map[int32]kgo.Offset, len(ends))
	for p, o := range ends {
		at[p] = kgo.NewOffset().At(o)
	}
	return kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: at}), nil
}

// endOffsets returns each partition's end offset: where the next record
// will be written.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = []kmsg.MetadataRequestTopic{mt}
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kafka: partitions of topic %s: %w", topic, err)
	}
	req := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, t := range mresp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("kafka: partitions of topic %s: %w", topic, err)
		}
		for _, p := range t.Partitions {
			lp := kmsg.NewListOffsetsRequestTopicPartition()
			lp.Partition = p.Partition
			lp.Timestamp = -1 // the latest offset
			lt.Partitions = append(lt.Partitions, lp)
		}
	}
	req.Topics = []kmsg.ListOffsetsRequestTopic{lt}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("kafka: end offsets of topic %s: %w", topic, err)
	}
	ends := make(map[int32]int64)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("kafka: end offset of %s/%d: %w", topic, p.Partition, err)
			}
			ends[p.Partition] = p.Offset
		}
	}
	if len(ends) != len(lt.Partitions) {
		return nil, fmt.Errorf("kafka: end offsets of topic %s: %d of %d partitions answered", topic, len(ends), len(lt.Partitions))
	}
	return ends, nil
}

// consume polls until ctx ends, handing each wanted record to fn.
func consume(ctx context.Context, cl *kgo.Client, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) {
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			cfg.Logger.Debug("kafka: consumer", "topic", topic, "partition", partition, "err", err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if d, ok := delivery(r, opts); ok {
				fn(d)
			}
		})
	}
}

// delivery converts r, reporting whether opts want it.
func delivery(r *kgo.Record, opts broker.SubscribeOptions) (broker.Delivery, bool) {
	d := broker.Delivery{
		Body:   r.Value,
		Where:  fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset),
		Stored: r.Timestamp,
	}
	var typ string
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderEventID:
			d.MsgID = string(h.Value)
		case HeaderEventType:
			typ = string(h.Value)
		}
	}
	if typ != "" && !opts.Wants(typ) {
		return d, false // skipped without parsing
	}
	d.Event, d.Err = outbox.ParseCloudEvent(d.Body)
	if len(opts.Types) > 0 && (d.Err != nil || !opts.Wants(d.Event.Type)) {
		return d, false
	}
	if d.Stored.IsZero() {
		d.Stored = time.Now()
	}
	return d, true
}
