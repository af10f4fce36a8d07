package rabbitmq

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
)

// prefetch bounds the unacknowledged deliveries of a FromStart
// subscription.
const prefetch = 256

// Subscribe reads the events published to cfg's exchange, for herald tail,
// herald bench and tests, and calls fn for each, one at a time, in the
// order the broker delivers them (per aggregate, the publish order). It
// declares the exchange if it does not exist yet; ctx bounds the setup only.
//
// RabbitMQ keeps messages only in queues, so what is read depends on
// opts.FromStart:
//
//   - false: a private queue (exclusive, deleted with the subscription) is
//     bound to the exchange, with "#" or with each of opts.Types as
//     routing key, and receives what is published from then on. Nothing
//     is taken from anyone else.
//   - true: the subscription consumes Config.Queue (declared as Connect
//     does; ErrFromStartNeedsQueue without one): everything it holds, then
//     what arrives. It acknowledges each delivery after fn returns, which
//     removes it from the queue; deliveries of types not in opts.Types are
//     acknowledged without calling fn.
//
// The subscription survives a lost connection: it reconnects with backoff
// (a private queue is declared anew and misses what was published
// meanwhile; Config.Queue's unacknowledged deliveries come again).
//
// stop ends the subscription and returns once fn has returned for the last
// time; it is idempotent and must not be called from fn.
func Subscribe(ctx context.Context, cfg Config, opts broker.SubscribeOptions, fn func(broker.Delivery)) (stop func(), err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if opts.FromStart && cfg.Queue == "" {
		return nil, ErrFromStartNeedsQueue
	}
	for _, t := range opts.Types {
		if t == "" || len(t) > maxShortStr {
			return nil, fmt.Errorf("%w: event type %q is no routing key", ErrInvalidConfig, t)
		}
	}
	a, _ := parseAddress(cfg.URL) // validated
	sub := &subscriber{
		cfg:      cfg,
		opts:     opts,
		fn:       fn,
		password: a.password,
		log:      cfg.Logger.With("exchange", cfg.Exchange),
		done:     make(chan struct{}),
	}
	sub.ctx, sub.cancel = context.WithCancel(context.Background())
	conn, deliveries, err := sub.open(ctx)
	if err != nil {
		sub.cancel()
		return nil, err
	}
	go sub.run(conn, deliveries)
	var once sync.Once
	return func() {
		once.Do(func() {
			sub.cancel()
			<-sub.done
		})
	}, nil
}

type subscriber struct {
	cfg      Config
	opts     broker.SubscribeOptions
	fn       func(broker.Delivery)
	password string
	log      *slog.Logger
	ctx      context.Context // ends with stop
	cancel   context.CancelFunc
	done     chan struct{} // closed when run has returned
}

// open connects and starts consuming; ctx (and ConnectTimeout) bound it.
func (s *subscriber) open(ctx context.Context) (*amqp.Connection, <-chan amqp.Delivery, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	conn, err := dial(ctx, s.cfg, s.cfg.ConnectionName+" subscriber")
	if err != nil {
		return nil, nil, err
	}
	abort := context.AfterFunc(ctx, func() { _ = conn.CloseDeadline(time.Now()) })
	deliveries, err := s.consume(conn)
	if !abort() && err == nil {
		err = fmt.Errorf("rabbitmq: subscribe: %w", ctx.Err())
	}
	if err != nil {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return nil, nil, mask(err, s.password)
	}
	return conn, deliveries, nil
}

// consume declares what the subscription reads and starts a consumer on it.
func (s *subscriber) consume(conn *amqp.Connection) (<-chan amqp.Delivery, error) {
	if err := declareExchange(conn, s.cfg.Exchange); err != nil {
		return nil, err
	}
	if s.opts.FromStart {
		if err := declareQueue(conn, s.cfg.Queue, s.cfg.Exchange, []string{"#"}); err != nil {
			return nil, err
		}
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	if s.opts.FromStart {
		if err := ch.Qos(prefetch, 0, false); err != nil {
			return nil, fmt.Errorf("rabbitmq: set prefetch: %w", err)
		}
		d, err := ch.Consume(s.cfg.Queue, "", false, false, false, false, nil)
		if err != nil {
			return nil, fmt.Errorf("rabbitmq: consume queue %s: %w", s.cfg.Queue, err)
		}
		return d, nil
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: declare a private queue: %w", err)
	}
	keys := s.opts.Types
	if len(keys) == 0 {
		keys = []string{"#"}
	}
	for _, key := range keys {
		if err := ch.QueueBind(q.Name, key, s.cfg.Exchange, false, nil); err != nil {
			return nil, fmt.Errorf("rabbitmq: bind a private queue to exchange %s with %q: %w", s.cfg.Exchange, key, err)
		}
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: consume a private queue: %w", err)
	}
	return d, nil
}

// run delivers until stop, reconnecting when the connection is lost.
func (s *subscriber) run(conn *amqp.Connection, deliveries <-chan amqp.Delivery) {
	defer close(s.done)
	for {
		select {
		case <-s.ctx.Done():
			_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
			return
		case d, ok := <-deliveries:
			if ok {
				s.deliver(d)
				continue
			}
			if s.ctx.Err() != nil {
				deliveries = nil // the ctx case closes the connection
				continue
			}
			_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
			s.log.Warn("rabbitmq: subscription lost, reconnecting")
			if conn, deliveries = s.reconnect(); conn == nil {
				return
			}
		}
	}
}

func (s *subscriber) reconnect() (*amqp.Connection, <-chan amqp.Delivery) {
	wait := reconnectMin
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1)) //nolint:gosec // jitter needs no cryptographic randomness
		select {
		case <-s.ctx.Done():
			t.Stop()
			return nil, nil
		case <-t.C:
		}
		conn, deliveries, err := s.open(s.ctx)
		if err == nil {
			s.log.Info("rabbitmq: subscription reconnected", "attempts", attempt)
			return conn, deliveries
		}
		if s.ctx.Err() != nil {
			return nil, nil
		}
		wait = min(2*wait, reconnectMax)
		s.log.Warn("rabbitmq: subscription reconnect failed", "attempt", attempt, "err", err, "next_in", wait)
	}
}

// deliver hands d to fn (if its type is wanted) and acknowledges it when
// the subscription consumes Config.Queue.
func (s *subscriber) deliver(d amqp.Delivery) {
	if s.opts.Wants(d.RoutingKey) {
		bd := broker.Delivery{Body: d.Body, Where: d.RoutingKey, MsgID: d.MessageId, Stored: time.Now()}
		bd.Event, bd.Err = outbox.ParseCloudEvent(d.Body)
		s.fn(bd)
	}
	if s.opts.FromStart {
		// An ack lost with the channel means a redelivery, nothing worse.
		_ = d.Ack(false)
	}
}
