package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// DefaultConsumeRetryDelay is ConsumeConfig.RetryDelay when it is zero.
const DefaultConsumeRetryDelay = time.Second

// ConsumeConfig configures Consume.
type ConsumeConfig struct {
	// Group is the consumer group (required). Its members share the
	// topic's partitions; its committed offsets survive restarts.
	Group string
	// RetryDelay is how long Consume waits before it hands a record whose
	// handler failed to the handler again; default
	// DefaultConsumeRetryDelay.
	RetryDelay time.Duration
}

// Consume reads cfg's topic as a member of a consumer group and calls
// handle for each record, committing the record's offset once handle
// returns nil: handle commits the consumer's work first (an inbox
// transaction), so an offset is never committed before its effect is
// durable. Partitions are handled concurrently, each in order (an
// aggregate's records share its partition). Kafka has no per-record
// redelivery: a record whose handle fails is handed to it again after
// RetryDelay, holding its partition back until it succeeds, or until stop;
// one whose error is outbox.Permanent (a body that can never be handled) is
// logged and committed. A member that dies before its commit leaves the
// record to the group, which reads it again with the same event id, a
// duplicate the inbox drops. A new group starts at the topic's start. The
// topic is created if need be (unless NoCreateTopic); ctx bounds the setup
// only.
//
// stop finishes the records being handled, commits them, leaves the group
// and returns; it is idempotent.
func Consume(ctx context.Context, cfg Config, ccfg ConsumeConfig, handle func(ctx context.Context, d broker.Delivery) error) (stop func(), err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ccfg.Group == "" {
		return nil, fmt.Errorf("%w: consume: a consumer group is required", ErrInvalidConfig)
	}
	if ccfg.RetryDelay <= 0 {
		ccfg.RetryDelay = DefaultConsumeRetryDelay
	}
	base, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}
	admin, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	err = ensureTopic(ctx, admin, cfg)
	admin.Close()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumerGroup(ccfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(), // a partition moves only between two polls, after the commit
	)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runGroup(runCtx, cl, cfg, ccfg, handle)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			cl.Close() // leaves the group
		})
	}, nil
}

// runGroup polls until ctx ends; each poll's records are handled and
// committed before the next poll.
func runGroup(ctx context.Context, cl *kgo.Client, cfg Config, ccfg ConsumeConfig, handle func(context.Context, broker.Delivery) error) {
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			cfg.Logger.Debug("kafka: group consumer", "topic", topic, "partition", partition, "err", err)
		})
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			handled []*kgo.Record
		)
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			wg.Go(func() {
				for _, r := range p.Records {
					if !handleRecord(ctx, cfg, ccfg, r, handle) {
						return // stopping: the rest is read again
					}
					mu.Lock()
					handled = append(handled, r)
					mu.Unlock()
				}
			})
		})
		wg.Wait()
		if len(handled) > 0 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := cl.CommitRecords(cctx, handled...); err != nil {
				// The records are read again: duplicates, nothing worse.
				cfg.Logger.Warn("kafka: commit failed", "topic", cfg.Topic, "group", ccfg.Group, "err", err)
			}
			cancel()
		}
		cl.AllowRebalance()
	}
}

// handleRecord hands r to handle until it succeeds or fails for good, and
// reports whether it is done with (false: ctx ended first).
func handleRecord(ctx context.Context, cfg Config, ccfg ConsumeConfig, r *kgo.Record, handle func(context.Context, broker.Delivery) error) bool {
	d, _ := delivery(r, broker.SubscribeOptions{}) // no type filter: every record
	for {
		err := handle(context.WithoutCancel(ctx), d)
		switch {
		case err == nil:
			return true
		case outbox.IsPermanent(err):
			cfg.Logger.Error("kafka: record refused for good; committed", "where", d.Where, "err", err)
			return true
		}
		cfg.Logger.Warn("kafka: handler failed; handing the record again", "where", d.Where, "err", err, "in", ccfg.RetryDelay)
		t := time.NewTimer(ccfg.RetryDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}
