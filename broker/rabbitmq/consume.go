package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// DefaultConsumeRetryDelay is ConsumeConfig.RetryDelay when it is zero.
const DefaultConsumeRetryDelay = time.Second

// ConsumeConfig configures Consume.
type ConsumeConfig struct {
	// Queue is the durable queue consumed (required). It is declared and
	// bound to the exchange with "#" if it does not exist; processes that
	// consume one queue share its messages.
	Queue string
	// Workers is how many messages are handled at once; default 1.
	Workers int
	// RetryDelay is how long a message whose handler failed is kept before
	// it goes back to the queue; default DefaultConsumeRetryDelay.
	RetryDelay time.Duration
}

// Consume reads Queue with manual acknowledgements and calls handle for
// each message, acknowledging it once handle returns nil: handle commits
// the consumer's work first (an inbox transaction), so a message is never
// acknowledged before its effect is durable. A failing handle has the
// message requeued after RetryDelay; one whose error is outbox.Permanent (a
// body that can never be handled) is rejected without requeueing (to the
// queue's dead-letter exchange, if it has one). A consumer that dies before
// its acknowledgement leaves the message to be delivered again, with the
// same message id, which the inbox drops as a duplicate. The exchange is
// declared if need be; ctx bounds the setup only. Consume reconnects with
// backoff when the connection is lost.
//
// stop cancels the consumer, lets the messages being handled finish and be
// acknowledged, and closes the connection; it is idempotent.
func Consume(ctx context.Context, cfg Config, ccfg ConsumeConfig, handle func(ctx context.Context, d broker.Delivery) error) (stop func(), err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ccfg.Queue == "" || len(ccfg.Queue) > maxShortStr {
		return nil, fmt.Errorf("%w: consume: queue name %q", ErrInvalidConfig, ccfg.Queue)
	}
	if ccfg.Workers <= 0 {
		ccfg.Workers = 1
	}
	if ccfg.RetryDelay <= 0 {
		ccfg.RetryDelay = DefaultConsumeRetryDelay
	}
	a, _ := parseAddress(cfg.URL) // validated
	c := &consumer{
		cfg: cfg, ccfg: ccfg, handle: handle, password: a.password,
		log:  cfg.Logger.With("exchange", cfg.Exchange, "queue", ccfg.Queue),
		done: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	s, err := c.open(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	go c.run(s)
	var once sync.Once
	return func() {
		once.Do(func() {
			c.cancel()
			<-c.done
		})
	}, nil
}

type consumer struct {
	cfg      Config
	ccfg     ConsumeConfig
	handle   func(context.Context, broker.Delivery) error
	password string
	log      *slog.Logger
	ctx      context.Context // ends with stop
	cancel   context.CancelFunc
	done     chan struct{} // closed when run has returned
}

// consumeSession is one connection's consumer.
type consumeSession struct {
	conn       *amqp.Connection
	ch         *amqp.Channel
	deliveries <-chan amqp.Delivery
}

const consumerTag = "herald-inbox"

// open connects, declares the exchange and the queue, and starts
// consuming; ctx (and ConnectTimeout) bound it.
func (c *consumer) open(ctx context.Context) (consumeSession, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	conn, err := dial(ctx, c.cfg, c.cfg.ConnectionName+" consumer")
	if err != nil {
		return consumeSession{}, err
	}
	abort := context.AfterFunc(ctx, func() { _ = conn.CloseDeadline(time.Now()) })
	s, err := c.start(conn)
	if !abort() && err == nil {
		err = fmt.Errorf("rabbitmq: consume: %w", ctx.Err())
	}
	if err != nil {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return consumeSession{}, mask(err, c.password)
	}
	return s, nil
}

func (c *consumer) start(conn *amqp.Connection) (consumeSession, error) {
	if err := declareExchange(conn, c.cfg.Exchange); err != nil {
		return consumeSession{}, err
	}
	if err := declareQueue(conn, c.ccfg.Queue, c.cfg.Exchange, []string{"#"}); err != nil {
		return consumeSession{}, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return consumeSession{}, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if err := ch.Qos(max(16, 2*c.ccfg.Workers), 0, false); err != nil {
		return consumeSession{}, fmt.Errorf("rabbitmq: set prefetch: %w", err)
	}
	d, err := ch.Consume(c.ccfg.Queue, consumerTag, false, false, false, false, nil)
	if err != nil {
		return consumeSession{}, fmt.Errorf("rabbitmq: consume queue %s: %w", c.ccfg.Queue, err)
	}
	return consumeSession{conn: conn, ch: ch, deliveries: d}, nil
}

// run handles deliveries until stop, reconnecting when the connection is
// lost.
func (c *consumer) run(s consumeSession) {
	defer close(c.done)
	for {
		var wg sync.WaitGroup
		for range c.ccfg.Workers {
			wg.Go(func() {
				for d := range s.deliveries {
					c.settle(d)
				}
			})
		}
		drained := make(chan struct{})
		go func() { wg.Wait(); close(drained) }()
		select {
		case <-c.ctx.Done():
			// No new deliveries; those being handled finish and are acknowledged.
			_ = s.ch.Cancel(consumerTag, false)
			<-drained
			_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
			return
		case <-drained: // the connection or channel was lost
			_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
		}
		c.log.Warn("rabbitmq: consumer lost, reconnecting")
		var ok bool
		if s, ok = c.reconnect(); !ok {
			return
		}
	}
}

func (c *consumer) reconnect() (consumeSession, bool) {
	wait := reconnectMin
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1)) //nolint:gosec // jitter needs no cryptographic randomness
		select {
		case <-c.ctx.Done():
			t.Stop()
			return consumeSession{}, false
		case <-t.C:
		}
		s, err := c.open(c.ctx)
		if err == nil {
			c.log.Info("rabbitmq: consumer reconnected", "attempts", attempt)
			return s, true
		}
		if c.ctx.Err() != nil {
			return consumeSession{}, false
		}
		wait = min(2*wait, reconnectMax)
		c.log.Warn("rabbitmq: consumer reconnect failed", "attempt", attempt, "err", err, "next_in", wait)
	}
}

// settle hands d to handle and acknowledges, requeues or rejects it. An
// acknowledgement lost with the channel means a redelivery, nothing worse.
func (c *consumer) settle(d amqp.Delivery) {
	bd := broker.Delivery{Body: d.Body, Where: d.RoutingKey, MsgID: d.MessageId, Stored: time.Now()}
	bd.Event, bd.Err = outbox.ParseCloudEvent(d.Body)
	err := c.handle(context.WithoutCancel(c.ctx), bd)
	switch {
	case err == nil:
		_ = d.Ack(false)
	case outbox.IsPermanent(err):
		c.log.Error("rabbitmq: message refused for good; rejected", "message_id", d.MessageId, "err", err)
		_ = d.Reject(false)
	default:
		c.log.Warn("rabbitmq: handler failed; the message is requeued", "message_id", d.MessageId, "err", err)
		t := time.NewTimer(c.ccfg.RetryDelay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
		}
		if err := d.Nack(false, true); err != nil && !errors.Is(err, amqp.ErrClosed) {
			c.log.Warn("rabbitmq: requeue failed; the broker redelivers the message with the connection", "err", err)
		}
	}
}
