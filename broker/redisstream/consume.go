package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// DefaultConsumeRetryDelay is ConsumeConfig.RetryDelay when it is zero.
const DefaultConsumeRetryDelay = time.Second

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
	handle func(context.Context, broker.Delivery) error
}

// consumeBlock bounds a blocked XREADGROUP, so that stop and the claims of
// pending entries are not held up longer.
const consumeBlock = 250 * time.Millisecond

func (c *groupConsumer) run(ctx context.Context) {
	wait := retryMin
	count := int64(max(16, 2*c.ccfg.Workers))
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

// settleAll handles msgs on the workers and acknowledges those handled.
func (c *groupConsumer) settleAll(ctx context.Context, msgs []redis.XMessage) {
	next := make(chan redis.XMessage)
	var wg sync.WaitGroup
	for range min(c.ccfg.Workers, len(msgs)) {
		wg.Go(func() {
			for m := range next {
				c.settle(ctx, m)
			}
		})
	}
	for _, m := range msgs {
		next <- m
	}
	close(next)
	wg.Wait()
}

func (c *groupConsumer) settle(ctx context.Context, m redis.XMessage) {
	d, _ := (&subscription{}).delivery(m) // no type filter: every entry
	err := c.handle(context.WithoutCancel(ctx), d)
	switch {
	case err == nil:
	case outbox.IsPermanent(err):
		c.cfg.Logger.Error("redisstream: entry refused for good; acknowledged", "stream", c.cfg.Stream, "entry", m.ID, "err", err)
	default:
		c.cfg.Logger.Warn("redisstream: handler failed; the entry stays pending", "stream", c.cfg.Stream, "entry", m.ID, "err", err)
		return
	}
	// An acknowledgement that fails leaves the entry pending: it is
	// claimed again and is a duplicate, nothing worse.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.rdb.XAck(actx, c.cfg.Stream, c.ccfg.Group, m.ID).Err(); err != nil {
		c.cfg.Logger.Warn("redisstream: XACK failed", "stream", c.cfg.Stream, "entry", m.ID, "err", err)
	}
}
