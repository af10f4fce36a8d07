package natsjs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/outbox"
)

// Defaults of ConsumeConfig.
const (
	DefaultConsumeAckWait    = 30 * time.Second
	DefaultConsumeRetryDelay = time.Second
	DefaultConsumeBatch      = 64
)

// ConsumeConfig configures Consume.
type ConsumeConfig struct {
	// Durable names the consumer on the server (required). Messages it has
	// acknowledged are not delivered to it again, also after a restart;
	// processes that share the name share the work.
	Durable string
	// Types restricts the consumer to these event types; empty takes all.
	// An inbox needs every event of the aggregates it follows (their
	// sequence counts them all): leave it empty in front of one.
	Types []string
	// Workers is how many messages are handled at once; default 1.
	Workers int
	// AckWait is how long the server waits for an acknowledgement before
	// it delivers the message again; default DefaultConsumeAckWait. It must
	// exceed the longest a handler takes.
	AckWait time.Duration
	// RetryDelay is how long the server waits before it delivers a message
	// whose handler failed again; default DefaultConsumeRetryDelay.
	RetryDelay time.Duration
	// Batch is the most messages ConsumeBatch hands to its handler at
	// once; default DefaultConsumeBatch. Consume hands one at a time.
	Batch int
}

// Consumer is a running Consume.
type Consumer struct {
	cc   jetstream.ConsumeContext
	work chan jetstream.Msg
	wg   sync.WaitGroup
	once sync.Once
}

// Consume reads the stream of cfg with a durable consumer that
// acknowledges each message explicitly, after handle returns nil for it:
// handle commits the consumer's work first (an inbox transaction), so a
// message is never acknowledged before its effect is durable. A failing
// handle has the message delivered again after RetryDelay; one whose error
// is outbox.Permanent (a body that can never be handled) terminates the
// message, which is not delivered again. A crash before the
// acknowledgement has the message delivered again after AckWait, with the
// same event id, which the inbox drops as a duplicate. The stream is
// created if it does not exist; the consumer is created or updated to ccfg.
//
// Call Stop to end it.
func Consume(ctx context.Context, nc *nats.Conn, cfg Config, ccfg ConsumeConfig, handle func(ctx context.Context, d Delivery) error) (*Consumer, error) {
	ccfg.Batch = 1
	return ConsumeBatch(ctx, nc, cfg, ccfg, func(ctx context.Context, ds []Delivery) []error {
		return []error{handle(ctx, ds[0])}
	})
}

// ConsumeBatch is Consume handing the messages to handle in batches: each
// worker takes what has arrived, up to ccfg.Batch messages (at least one;
// it waits for none beyond what is there), and settles each message by
// the error at its position in what handle returns, as Consume does: nil
// acknowledges it, an error has it delivered again after RetryDelay, an
// outbox.Permanent one terminates it. handle returns one error per
// delivery; a slice of another length has the whole batch delivered again.
// It is the consumer for inbox.DeliverBatch, which commits a batch in one
// transaction before any of its messages is acknowledged:
//
//	natsjs.ConsumeBatch(ctx, nc, cfg, ccfg, func(ctx context.Context, ds []natsjs.Delivery) []error {
//		bodies := make([][]byte, len(ds))
//		for i, d := range ds {
//			bodies[i] = d.Body
//		}
//		return in.DeliverBatch(ctx, bodies)
//	})
func ConsumeBatch(ctx context.Context, nc *nats.Conn, cfg Config, ccfg ConsumeConfig, handle func(ctx context.Context, ds []Delivery) []error) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ccfg.Durable == "" || !validConsumerName(ccfg.Durable) {
		return nil, fmt.Errorf("natsjs: consume: invalid durable consumer name %q", ccfg.Durable)
	}
	if ccfg.Workers <= 0 {
		ccfg.Workers = 1
	}
	if ccfg.AckWait <= 0 {
		ccfg.AckWait = DefaultConsumeAckWait
	}
	if ccfg.RetryDelay <= 0 {
		ccfg.RetryDelay = DefaultConsumeRetryDelay
	}
	if ccfg.Batch <= 0 {
		ccfg.Batch = DefaultConsumeBatch
	}
	// What the workers may hold at once: the server's pull and ack window.
	inFlight := ccfg.Workers * ccfg.Batch
	subjects := []string{cfg.SubjectPrefix + ">"}
	if len(ccfg.Types) > 0 {
		subjects = subjects[:0]
		for _, t := range ccfg.Types {
			if err := validSubjectSuffix(t); err != nil {
				return nil, err
			}
			subjects = append(subjects, cfg.SubjectPrefix+t)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	if err := ensureStream(ctx, js, cfg, false); err != nil {
		return nil, err
	}
	cc := jetstream.ConsumerConfig{
		Durable:       ccfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ccfg.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: max(64, 4*inFlight),
	}
	if len(subjects) == 1 { // servers before 2.10 know one filter only
		cc.FilterSubject = subjects[0]
	} else {
		cc.FilterSubjects = subjects
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("natsjs: durable consumer %s on stream %s: %w", ccfg.Durable, cfg.Stream, err)
	}
	// A batch is what waits in work when a worker comes for it.
	c := &Consumer{work: make(chan jetstream.Msg, inFlight)}
	// Handlers run on a context of their own: Stop lets them finish.
	hctx := context.WithoutCancel(ctx)
	for range ccfg.Workers {
		c.wg.Go(func() {
			batch := make([]jetstream.Msg, 0, ccfg.Batch)
			for m := range c.work {
				batch = append(batch[:0], m)
				batch = takeWaiting(c.work, batch, ccfg.Batch)
				handleBatch(hctx, cfg, ccfg, batch, handle)
			}
		})
	}
	c.cc, err = cons.Consume(func(m jetstream.Msg) { c.work <- m },
		jetstream.PullMaxMessages(max(16, 2*inFlight)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			cfg.Logger.Debug("natsjs: durable consumer", "stream", cfg.Stream, "durable", ccfg.Durable, "err", err)
		}))
	if err != nil {
		close(c.work)
		c.wg.Wait()
		return nil, fmt.Errorf("natsjs: consume stream %s: %w", cfg.Stream, err)
	}
	return c, nil
}

// takeWaiting appends to batch the messages waiting in work, up to limit in
// all, without waiting for more.
func takeWaiting(work <-chan jetstream.Msg, batch []jetstream.Msg, limit int) []jetstream.Msg {
	for len(batch) < limit {
		select {
		case m, ok := <-work:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// handleBatch hands ms to handle and settles each with the server.
func handleBatch(ctx context.Context, cfg Config, ccfg ConsumeConfig, ms []jetstream.Msg, handle func(context.Context, []Delivery) []error) {
	ds := make([]Delivery, len(ms))
	for i, m := range ms {
		d := Delivery{Body: m.Data(), Subject: m.Subject(), Header: m.Headers()}
		if md, err := m.Metadata(); err == nil {
			d.StreamSeq, d.Stored = md.Sequence.Stream, md.Timestamp
		}
		d.Event, d.Err = outbox.ParseCloudEvent(d.Body)
		ds[i] = d
	}
	errs := handle(ctx, ds)
	if len(errs) != len(ds) {
		err := fmt.Errorf("natsjs: the handler returned %d results for %d messages", len(errs), len(ds))
		errs = make([]error, len(ds))
		for i := range errs {
			errs[i] = err
		}
	}
	for i, m := range ms {
		settle(cfg, ccfg, m, ds[i].StreamSeq, errs[i])
	}
}

// settle acknowledges m, or terminates it, or has it delivered again, by
// its handler's err.
func settle(cfg Config, ccfg ConsumeConfig, m jetstream.Msg, streamSeq uint64, err error) {
	switch {
	case err == nil:
		err = m.Ack()
	case outbox.IsPermanent(err):
		cfg.Logger.Error("natsjs: message refused for good; terminated", "stream", cfg.Stream,
			"durable", ccfg.Durable, "stream_seq", streamSeq, "err", err)
		err = m.TermWithReason(truncate(err.Error(), 200))
	default:
		cfg.Logger.Warn("natsjs: handler failed; the message is delivered again", "stream", cfg.Stream,
			"durable", ccfg.Durable, "stream_seq", streamSeq, "err", err)
		err = m.NakWithDelay(ccfg.RetryDelay)
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		// The server delivers the message again after AckWait.
		cfg.Logger.Warn("natsjs: settling a message failed", "stream", cfg.Stream, "durable", ccfg.Durable, "err", err)
	}
}

// Stop stops fetching, lets the messages being handled finish and settle,
// and returns. It is idempotent. Messages fetched but not handled yet are
// delivered again after AckWait.
func (c *Consumer) Stop() {
	c.once.Do(func() {
		c.cc.Stop()
		<-c.cc.Closed()
		close(c.work)
		c.wg.Wait()
	})
}

func validConsumerName(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || r == 0x7f {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
