package kafka

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// Defaults of ConsumeConfig.
const (
	DefaultConsumeRetryDelay = time.Second
	DefaultConsumeBatch      = 64
)

// ConsumeConfig configures Consume.
type ConsumeConfig struct {
	// Group is the consumer group (required). Its members share the
	// topic's partitions; its committed offsets survive restarts.
	Group string
	// RetryDelay is how long Consume waits before it hands a record whose
	// handler failed to the handler again; default
	// DefaultConsumeRetryDelay.
	RetryDelay time.Duration
	// Batch is the most records of a partition ConsumeBatch hands to its
	// handler at once; default DefaultConsumeBatch. Consume hands one at a
	// time.
	Batch int
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
	ccfg.Batch = 1
	return ConsumeBatch(ctx, cfg, ccfg, func(ctx context.Context, ds []broker.Delivery) []error {
		return []error{handle(ctx, ds[0])}
	})
}

// ConsumeBatch is Consume handing a partition's records to handle in
// batches of up to ccfg.Batch, in partition order: each record is settled
// by the error at its position in what handle returns, as Consume settles
// it (a Permanent error is logged and committed past). The records whose
// handle failed are handed to it again, together, after RetryDelay; the
// partition waits for them, and its offset is committed only past records
// handled. handle returns one error per delivery; a slice of another
// length fails the whole batch. It is the consumer for inbox.DeliverBatch,
// which commits a batch in one transaction.
func ConsumeBatch(ctx context.Context, cfg Config, ccfg ConsumeConfig, handle func(ctx context.Context, ds []broker.Delivery) []error) (stop func(), err error) {
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
	if ccfg.Batch <= 0 {
		ccfg.Batch = DefaultConsumeBatch
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
func runGroup(ctx context.Context, cl *kgo.Client, cfg Config, ccfg ConsumeConfig, handle func(context.Context, []broker.Delivery) []error) {
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
				for recs := range slices.Chunk(p.Records, ccfg.Batch) {
					n := handleRecords(ctx, cfg, ccfg, recs, handle)
					mu.Lock()
					handled = append(handled, recs[:n]...)
					mu.Unlock()
					if n < len(recs) {
						return // stopping: the rest is read again
					}
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

// handleRecords hands recs to handle until each has succeeded or failed
// for good, the failed ones again after RetryDelay, and returns how many
// of them, from the first, are done with (fewer than all: ctx ended
// first).
func handleRecords(ctx context.Context, cfg Config, ccfg ConsumeConfig, recs []*kgo.Record, handle func(context.Context, []broker.Delivery) []error) int {
	pending := make([]int, len(recs)) // indexes into recs, ascending
	ds := make([]broker.Delivery, len(recs))
	for i, r := range recs {
		pending[i] = i
		ds[i], _ = delivery(r, broker.SubscribeOptions{}) // no type filter: every record
	}
	batch := make([]broker.Delivery, 0, len(recs))
	for {
		batch = batch[:0]
		for _, i := range pending {
			batch = append(batch, ds[i])
		}
		errs := handle(context.WithoutCancel(ctx), batch)
		if len(errs) != len(batch) {
			err := fmt.Errorf("kafka: the handler returned %d results for %d records", len(errs), len(batch))
			errs = make([]error, len(batch))
			for k := range errs {
				errs[k] = err
			}
		}
		failed := pending[:0]
		for k, i := range pending {
			switch err := errs[k]; {
			case err == nil:
			case outbox.IsPermanent(err):
				cfg.Logger.Error("kafka: record refused for good; committed", "where", ds[i].Where, "err", err)
			default:
				cfg.Logger.Warn("kafka: handler failed; handing the record again", "where", ds[i].Where, "err", err, "in", ccfg.RetryDelay)
				failed = append(failed, i)
			}
		}
		if pending = failed; len(pending) == 0 {
			return len(recs)
		}
		t := time.NewTimer(ccfg.RetryDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return pending[0]
		}
	}
}
