package redisstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

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
	// Group is the consumer group (required), created at the stream's
	// start if it does not exist. Processes in one group share the entries.
	Group string
	// Consumer names this consumer in the group (required, and unique
	// among the group's live consumers): its pending entries are read
	// again when it restarts under the same name.
	Consumer string
	// Workers is how many entries are handled at once; default 1.
	Workers int
	// RetryDelay is how long an entry whose handler failed (or whose
	// consumer died) stays pending before it is claimed and handled again;
	// default DefaultConsumeRetryDelay. It must exceed the longest a
	// handler takes.
	RetryDelay time.Duration
	// Batch is the most entries ConsumeBatch hands to its handler at once;
	// default DefaultConsumeBatch. Consume hands one at a time.
	Batch int
}

// Consume reads cfg's stream with XREADGROUP in a consumer group and calls
// handle for each entry, acknowledging it (XACK) once handle returns nil:
// handle commits the consumer's work first (an inbox transaction), so an
// entry is never acknowledged before its effect is durable. An entry whose
// handle fails stays pending and is claimed again (XAUTOCLAIM) after
// RetryDelay, by this consumer or another of the group, as are the entries
// of a consumer that died; one whose error is outbox.Permanent (a body that
// can never be handled) is acknowledged and logged. A redelivered entry
// carries the same event, which the inbox drops as a duplicate once
// handled. ctx bounds the setup only; Consume survives lost connections.
//
// stop ends it after the entries being handled are settled; it is
// idempotent.
func Consume(ctx context.Context, cfg Config, ccfg ConsumeConfig, handle func(ctx context.Context, d broker.Delivery) error) (stop func(), err error) {
	ccfg.Batch = 1
	return ConsumeBatch(ctx, cfg, ccfg, func(ctx context.Context, ds []broker.Delivery) []error {
		return []error{handle(ctx, ds[0])}
	})
}

// ConsumeBatch is Consume handing the entries to handle in batches: the
// entries of one read are shared among the workers in batches of up to
// ccfg.Batch, and each entry is settled by the error at its position in
// what handle returns, as Consume settles it; the acknowledged entries of a
// batch go in one XACK. handle returns one error per delivery; a slice of
// another length leaves the whole batch pending. It is the consumer for
// inbox.DeliverBatch, which commits a batch in one transaction.
func ConsumeBatch(ctx context.Context, cfg Config, ccfg ConsumeConfig, handle func(ctx context.Context, ds []broker.Delivery) []error) (stop func(), err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ccfg.Group == "" || ccfg.Consumer == "" {
		return nil, errors.New("redisstream: consume: a group and a consumer name are required")
	}
	if ccfg.Workers <= 0 {
		ccfg.Workers = 1
	}
	if ccfg.RetryDelay <= 0 {
		ccfg.RetryDelay = DefaultConsumeRetryDelay
	}
	if ccfg.Batch <= 0 {
		ccfg.Batch = DefaultConsumeBatch
	}
	c := &groupConsumer{rdb: newClient(cfg), cfg: cfg, ccfg: ccfg, handle: handle}
	err = c.rdb.XGroupCreateMkStream(ctx, cfg.Stream, ccfg.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		_ = c.rdb.Close()
		return nil, fmt.Errorf("redisstream: create group %s on %s at %s: %w", ccfg.Group, cfg.Stream, cfg.Addr, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(runCtx)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			_ = c.rdb.Close()
		})
	}, nil
}

type groupConsumer struct {
	rdb    *redis.Client
	cfg    Config
	ccfg   ConsumeConfig
	handle func(context.Context, []broker.Delivery) []error
}

// consumeBlock bounds a blocked XREADGROUP, so that stop and the claims of
// pending entries are not held up longer.
const consumeBlock = 250 * time.Millisecond

func (c *groupConsumer) run(ctx context.Context) {
	wait := retryMin
	count := int64(max(16, 2*c.ccfg.Workers*c.ccfg.Batch))
	own := "0" // first this consumer's own pending entries, from before a restart
	for ctx.Err() == nil {
		// Entries pending too long (failed, or their consumer died).
		claimed, _, err := c.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: c.cfg.Stream, Group: c.ccfg.Group, Consumer: c.ccfg.Consumer,
			MinIdle: c.ccfg.RetryDelay, Start: "0-0", Count: count,
		}).Result()
		var msgs []redis.XMessage
		if err == nil {
			msgs = claimed
			var res []redis.XStream
			res, err = c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: c.ccfg.Group, Consumer: c.ccfg.Consumer,
				Streams: []string{c.cfg.Stream, own}, Count: count, Block: consumeBlock,
			}).Result()
			for _, st := range res {
				msgs = append(msgs, st.Messages...)
			}
			if own == "0" && err == nil && len(msgs) == len(claimed) {
				own = ">" // nothing of our own left pending: new entries from now on
			}
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return
			}
			c.cfg.Logger.Warn("redisstream: reading the group failed; retrying",
				"stream", c.cfg.Stream, "group", c.ccfg.Group, "err", err)
			sleep(ctx, wait)
			wait = min(2*wait, retryMax)
			continue
		}
		wait = retryMin
		c.settleAll(ctx, msgs)
	}
}

// settleAll handles msgs on the workers, in batches spread over them, and
// acknowledges those handled.
func (c *groupConsumer) settleAll(ctx context.Context, msgs []redis.XMessage) {
	if len(msgs) == 0 {
		return
	}
	size := max(1, min(c.ccfg.Batch, (len(msgs)+c.ccfg.Workers-1)/c.ccfg.Workers))
	next := make(chan []redis.XMessage)
	var wg sync.WaitGroup
	for range min(c.ccfg.Workers, (len(msgs)+size-1)/size) {
		wg.Go(func() {
			for ms := range next {
				c.settle(ctx, ms)
			}
		})
	}
	for ms := range slices.Chunk(msgs, size) {
		next <- ms
	}
	close(next)
	wg.Wait()
}

func (c *groupConsumer) settle(ctx context.Context, ms []redis.XMessage) {
	ds := make([]broker.Delivery, len(ms))
	for i, m := range ms {
		ds[i], _ = (&subscription{}).delivery(m) // no type filter: every entry
	}
	errs := c.handle(context.WithoutCancel(ctx), ds)
	if len(errs) != len(ds) {
		err := fmt.Errorf("redisstream: the handler returned %d results for %d entries", len(errs), len(ds))
		errs = make([]error, len(ds))
		for i := range errs {
			errs[i] = err
		}
	}
	acks := make([]string, 0, len(ms))
	for i, m := range ms {
		switch err := errs[i]; {
		case err == nil:
		case outbox.IsPermanent(err):
			c.cfg.Logger.Error("redisstream: entry refused for good; acknowledged", "stream", c.cfg.Stream, "entry", m.ID, "err", err)
		default:
			c.cfg.Logger.Warn("redisstream: handler failed; the entry stays pending", "stream", c.cfg.Stream, "entry", m.ID, "err", err)
			continue
		}
		acks = append(acks, m.ID)
	}
	if len(acks) == 0 {
		return
	}
	// An acknowledgement that fails leaves the entries pending: they are
	// claimed again and are duplicates, nothing worse.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.rdb.XAck(actx, c.cfg.Stream, c.ccfg.Group, acks...).Err(); err != nil {
		c.cfg.Logger.Warn("redisstream: XACK failed", "stream", c.cfg.Stream, "entries", len(acks), "err", err)
	}
}
