package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// How a subscription reads: up to readCount entries per XREAD, blocking up
// to readBlock for new ones; after a failure it waits from retryMin,
// doubling up to retryMax, before reading again.
const (
	readCount = 512
	readBlock = 5 * time.Second
	retryMin  = 100 * time.Millisecond
	retryMax  = 5 * time.Second
)

// Subscribe reads cfg's stream with XREAD on a client of its own and calls
// fn for each entry, one at a time and in stream order: with
// opts.FromStart every entry the stream still holds, otherwise only those
// added after Subscribe returns. Entries of types opts does not want are
// skipped (by the type field, or the parsed event's type when the field is
// missing).
//
// Each Delivery has Where set to the entry id, MsgID to the id field (the
// event id), Stored to the time in the entry id, and Event parsed from the
// event field (Err set for an entry that holds no valid event, such as one
// another program added). ctx bounds the setup only: Subscribe fails when
// Redis is unreachable or the key holds another type.
//
// A subscription survives lost connections, reading again after the last
// entry it delivered; entries trimmed away meanwhile (Config.MaxLen) are
// missed. stop ends the subscription and returns once fn has returned for
// the last time; it is idempotent and must not be called from fn.
func Subscribe(ctx context.Context, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (stop func(), err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &subscription{rdb: newClient(cfg), cfg: cfg, opts: opts, fn: fn}
	start, err := s.start(ctx)
	if err != nil {
		_ = s.rdb.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(runCtx, start)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			_ = s.rdb.Close() // interrupts a blocked XREAD
			<-done
		})
	}, nil
}

type subscription struct {
	rdb  *redis.Client
	cfg  Config
	opts broker.SubscribeOptions
	fn   func(broker.Delivery)
}

// start checks the key and returns the id to read after: 0-0 from the
// start, otherwise the stream's last entry now (reading from "$" in every
// XREAD would miss entries added between two reads).
func (s *subscription) start(ctx context.Context) (string, error) {
	typ, err := s.rdb.Type(ctx, s.cfg.Stream).Result()
	switch {
	case err != nil:
		return "", fmt.Errorf("redisstream: subscribe to %s at %s: %w", s.cfg.Stream, s.cfg.Addr, err)
	case typ != "none" && typ != "stream":
		return "", fmt.Errorf("%w: key %q at %s is a %s", ErrWrongType, s.cfg.Stream, s.cfg.Addr, typ)
	case s.opts.FromStart:
		return "0-0", nil
	}
	last, err := s.rdb.XRevRangeN(ctx, s.cfg.Stream, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("redisstream: subscribe to %s at %s: %w", s.cfg.Stream, s.cfg.Addr, err)
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

func (s *subscription) run(ctx context.Context, after string) {
	wait := retryMin
	failing := false
	for ctx.Err() == nil {
		res, err := s.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{s.cfg.Stream, after},
			Count:   readCount,
			Block:   readBlock,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) { // Nil: nothing new within readBlock
			if ctx.Err() != nil {
				return
			}
			if !failing {
				s.cfg.Logger.Warn("redisstream: reading the stream failed; retrying",
					"stream", s.cfg.Stream, "addr", s.cfg.Addr, "err", err)
				failing = true
			}
			sleep(ctx, wait)
			wait = min(2*wait, retryMax)
			continue
		}
		if failing {
			s.cfg.Logger.Info("redisstream: reading the stream again", "stream", s.cfg.Stream, "addr", s.cfg.Addr)
			failing, wait = false, retryMin
		}
		for _, st := range res {
			for _, m := range st.Messages {
				after = m.ID
				if d, ok := s.delivery(m); ok {
					s.fn(d)
				}
			}
		}
	}
}

// delivery converts an entry, reporting false for a type not wanted.
func (s *subscription) delivery(m redis.XMessage) (broker.Delivery, bool) {
	typ, _ := m.Values[FieldType].(string)
	id, _ := m.Values[FieldID].(string)
	d := broker.Delivery{Where: m.ID, MsgID: id, Stored: entryTime(m.ID)}
	if body, ok := m.Values[FieldEvent].(string); ok {
		d.Body = []byte(body)
		d.Event, d.Err = outbox.ParseCloudEvent(d.Body)
	} else {
		d.Err = fmt.Errorf("redisstream: entry %s has no %s field", m.ID, FieldEvent)
	}
	if typ == "" {
		typ = d.Event.Type
	}
	return d, s.opts.Wants(typ)
}

// entryTime is the time in an entry id (milliseconds-sequence).
func entryTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Now()
	}
	return time.UnixMilli(n)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
