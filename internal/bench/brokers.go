package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	hbroker "github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/outbox"
)

// endpoint is a namespace of the bench's own on the broker of a run, made
// for one drain (or one full run) and removed by Close: a NATS stream, a
// Kafka topic, a RabbitMQ exchange with a queue bound to it, a Redis
// stream, or a webhook receiver of the bench on 127.0.0.1.
type endpoint struct {
	kind app.BrokerKind
	// connect opens the adapter's publisher (the relay's).
	connect func(ctx context.Context) (outbox.Publisher, error)
	// plain opens the publisher of the plain loop, written directly with
	// the broker's client library; nil: the adapter's (webhook).
	plain func(ctx context.Context) (outbox.Publisher, error)
	// subscribe reads the namespace back: everything it holds with
	// fromStart, otherwise what arrives from now on.
	subscribe func(ctx context.Context, fromStart bool, fn func(hbroker.Delivery)) (stop func(), err error)
	// live: deliveries are not kept (webhook), so a read-back must be
	// subscribed before the events are published.
	live bool
	// natsURL and nats are the server and stream of a NATS endpoint.
	natsURL string
	nats    natsjs.Config
	close   cleanups
}

func (e *endpoint) Close() { e.close.run() }

// openPlain opens the plain loop's publisher.
func (e *endpoint) openPlain(ctx context.Context) (outbox.Publisher, error) {
	if e.plain != nil {
		return e.plain(ctx)
	}
	return e.connect(ctx)
}

// newEndpoint makes a fresh namespace on the broker br.
func newEndpoint(ctx context.Context, br *broker) (*endpoint, error) {
	id := randomHex(5)
	name := "herald.bench." + id
	switch br.kind {
	case app.BrokerEmbedded, app.BrokerNATS:
		return natsEndpoint(br.url, uniqueStream()), nil
	case app.BrokerRabbitMQ:
		cfg, err := rabbitmq.ParseURL(br.url)
		if err != nil {
			return nil, err
		}
		cfg.Exchange, cfg.Queue = name, name
		return rabbitEndpoint(cfg), nil
	case app.BrokerRedis:
		cfg, err := redisstream.ParseURL(br.url)
		if err != nil {
			return nil, err
		}
		cfg.Stream = name
		return redisEndpoint(cfg), nil
	case app.BrokerKafka:
		cfg, err := kafka.ParseURL(br.url)
		if err != nil {
			return nil, err
		}
		cfg.Topic = "herald-bench-" + id
		return kafkaEndpoint(cfg), nil
	case app.BrokerWebhook:
		return webhookEndpoint(ctx)
	}
	return nil, &app.UsageError{Err: fmt.Errorf("--broker %s cannot be read back by the bench", br.kind)}
}

func natsEndpoint(natsURL string, stream natsjs.Config) *endpoint {
	e := natsReader(natsURL, stream)
	e.close.add(func() { _ = deleteStream(natsURL, stream) })
	return e
}

// natsReader is the stream of a NATS server, left as it is at Close.
func natsReader(natsURL string, stream natsjs.Config) *endpoint {
	e := &endpoint{kind: app.BrokerNATS, natsURL: natsURL, nats: stream}
	e.connect = func(ctx context.Context) (outbox.Publisher, error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return natsjs.Connect(cctx, natsURL, stream)
	}
	e.plain = func(ctx context.Context) (outbox.Publisher, error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return newPlainNATS(cctx, natsURL, stream)
	}
	e.subscribe = func(ctx context.Context, fromStart bool, fn func(hbroker.Delivery)) (func(), error) {
		c, err := consumeNATS(ctx, natsURL, stream, !fromStart, fn)
		if err != nil {
			return nil, err
		}
		return c.Close, nil
	}
	return e
}

// fromNATS is the broker.Delivery of a NATS message.
func fromNATS(d natsjs.Delivery) hbroker.Delivery {
	return hbroker.Delivery{Event: d.Event, Err: d.Err, Body: d.Body, Where: d.Subject, MsgID: d.Header.Get("Nats-Msg-Id"), Stored: d.Stored}
}

func rabbitEndpoint(cfg rabbitmq.Config) *endpoint {
	e := &endpoint{kind: app.BrokerRabbitMQ}
	e.close.add(func() {
		conn, err := amqp.DialConfig(cfg.URL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(cfg.Queue, false, false, false)
			_ = ch.ExchangeDelete(cfg.Exchange, false, false)
			_ = ch.Close()
		}
	})
	e.connect = func(ctx context.Context) (outbox.Publisher, error) { return rabbitmq.Connect(ctx, cfg) }
	e.plain = func(ctx context.Context) (outbox.Publisher, error) {
		// The adapter declares the exchange and the queue, as for the relay;
		// the plain loop publishes on connections of its own.
		p, err := rabbitmq.Connect(ctx, cfg)
		if err != nil {
			return nil, err
		}
		_ = p.Close()
		return newPlainRabbit(cfg)
	}
	e.subscribe = func(ctx context.Context, fromStart bool, fn func(hbroker.Delivery)) (func(), error) {
		c := cfg
		if !fromStart {
			c.Queue = "" // a private queue: what is published from now on
		}
		return rabbitmq.Subscribe(ctx, c, hbroker.SubscribeOptions{FromStart: fromStart}, fn)
	}
	return e
}

func redisEndpoint(cfg redisstream.Config) *endpoint {
	e := &endpoint{kind: app.BrokerRedis}
	e.close.add(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		rdb := newRedis(cfg)
		defer func() { _ = rdb.Close() }()
		_ = rdb.Del(ctx, cfg.Stream).Err()
	})
	e.connect = func(ctx context.Context) (outbox.Publisher, error) { return redisstream.Connect(ctx, cfg) }
	e.plain = func(ctx context.Context) (outbox.Publisher, error) {
		p := &plainRedis{rdb: newRedis(cfg), stream: cfg.Stream}
		if err := p.rdb.Ping(ctx).Err(); err != nil {
			_ = p.rdb.Close()
			return nil, fmt.Errorf("bench: redis: %w", err)
		}
		return p, nil
	}
	e.subscribe = func(ctx context.Context, fromStart bool, fn func(hbroker.Delivery)) (func(), error) {
		return redisstream.Subscribe(ctx, cfg, hbroker.SubscribeOptions{FromStart: fromStart}, fn)
	}
	return e
}

func kafkaEndpoint(cfg kafka.Config) *endpoint {
	e := &endpoint{kind: app.BrokerKafka}
	e.close.add(func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
		if err != nil {
			return
		}
		defer cl.Close()
		req := kmsg.NewPtrDeleteTopicsRequest()
		t := kmsg.NewDeleteTopicsRequestTopic()
		t.Topic = kmsg.StringPtr(cfg.Topic)
		req.Topics = append(req.Topics, t)
		req.TopicNames = []string{cfg.Topic}
		_, _ = req.RequestWith(ctx, cl)
	})
	e.connect = func(ctx context.Context) (outbox.Publisher, error) { return kafka.Connect(ctx, cfg) }
	e.plain = func(ctx context.Context) (outbox.Publisher, error) {
		// The adapter creates the topic, as for the relay.
		p, err := kafka.Connect(ctx, cfg)
		if err != nil {
			return nil, err
		}
		_ = p.Close()
		return newPlainKafka(cfg)
	}
	e.subscribe = func(ctx context.Context, fromStart bool, fn func(hbroker.Delivery)) (func(), error) {
		return kafka.Subscribe(ctx, cfg, hbroker.SubscribeOptions{FromStart: fromStart}, fn)
	}
	return e
}

// webhookEndpoint runs a webhook.Receiver on 127.0.0.1 with a fresh secret.
// Its deliveries go to the function of the latest subscribe.
func webhookEndpoint(ctx context.Context) (*endpoint, error) {
	secret := webhook.NewSecret()
	ver, err := webhook.NewVerifier(secret)
	if err != nil {
		return nil, err
	}
	e := &endpoint{kind: app.BrokerWebhook, live: true}
	var sink fnBox
	rc := &webhook.Receiver{Verifier: ver, Deliver: func(_ context.Context, d hbroker.Delivery) error {
		sink.call(d)
		return nil
	}}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	e.close.add(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = srv.Close()
		}
	})
	wcfg := webhook.Config{URL: "http://" + ln.Addr().String() + "/events", Secrets: []webhook.Secret{secret}}
	e.connect = func(context.Context) (outbox.Publisher, error) { return webhook.New(wcfg) }
	e.subscribe = func(_ context.Context, fromStart bool, fn func(hbroker.Delivery)) (func(), error) {
		if fromStart {
			return nil, errors.New("bench: a webhook keeps nothing to read back")
		}
		sink.set(fn)
		return func() { sink.set(nil) }, nil
	}
	return e, nil
}

// remoteReader reads the orders' events of a running Herald back from the
// external broker of acfg.BrokerURL (app.SubscribeBroker).
func remoteReader(acfg app.Config, kind app.BrokerKind) (*endpoint, error) {
	if kind == app.BrokerWebhook {
		return nil, &app.UsageError{Err: errors.New("--url with a webhook --broker: the bench cannot read a webhook back; run it without --url, it then receives the webhooks itself")}
	}
	e := &endpoint{kind: kind}
	e.subscribe = func(ctx context.Context, fromStart bool, fn func(hbroker.Delivery)) (func(), error) {
		return app.SubscribeBroker(ctx, acfg, hbroker.SubscribeOptions{FromStart: fromStart}, fn)
	}
	return e, nil
}

// plainRabbit is the plain loop's RabbitMQ publisher: a confirm-mode
// channel per concurrent batch on one connection, every message published
// with a deferred confirm, then the confirms awaited.
type plainRabbit struct {
	conn     *amqp.Connection
	exchange string
	chans    chan *amqp.Channel
}

func newPlainRabbit(cfg rabbitmq.Config) (*plainRabbit, error) {
	conn, err := amqp.DialConfig(cfg.URL, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second), Properties: amqp.Table{"connection_name": "herald bench plain loop"}})
	if err != nil {
		return nil, fmt.Errorf("bench: rabbitmq: %w", app.RedactError(err, cfg.URL))
	}
	return &plainRabbit{conn: conn, exchange: cfg.Exchange, chans: make(chan *amqp.Channel, 64)}, nil
}

func (p *plainRabbit) channel() (*amqp.Channel, error) {
	select {
	case ch := <-p.chans:
		return ch, nil
	default:
	}
	ch, err := p.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	return ch, nil
}

func (p *plainRabbit) Publish(ctx context.Context, msgs []outbox.Message) []error {
	ch, err := p.channel()
	if err != nil {
		return outbox.AllFailed(len(msgs), err)
	}
	errs := make([]error, len(msgs))
	dcs := make([]*amqp.DeferredConfirmation, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		dcs[i], errs[i] = ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, m.Type, false, false, amqp.Publishing{
			ContentType:  rabbitmq.ContentType,
			DeliveryMode: amqp.Persistent,
			MessageId:    m.ID.String(),
			Timestamp:    m.CreatedAt,
			Type:         m.Type,
			Body:         m.Body,
		})
	}
	ok := true
	for i, dc := range dcs {
		if dc == nil {
			ok = false
			continue
		}
		acked, err := dc.WaitContext(ctx)
		if err != nil || !acked {
			ok = false
			errs[i] = cmpErr(err, errors.New("nacked"))
		}
	}
	if ok {
		select {
		case p.chans <- ch:
			return errs
		default:
		}
	}
	_ = ch.Close()
	return errs
}

func (p *plainRabbit) Close() error {
	for {
		select {
		case ch := <-p.chans:
			_ = ch.Close()
		default:
			return p.conn.Close()
		}
	}
}

// plainRedis is the plain loop's Redis publisher: one pipeline of XADDs per
// batch.
type plainRedis struct {
	rdb    *redis.Client
	stream string
}

func newRedis(cfg redisstream.Config) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, DB: cfg.DB, TLSConfig: cfg.TLS, MaxRetries: -1})
}

func (p *plainRedis) Publish(ctx context.Context, msgs []outbox.Message) []error {
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: p.stream, Values: []any{
			redisstream.FieldEvent, m.Body,
			redisstream.FieldType, m.Type,
			redisstream.FieldSubject, m.AggregateID,
			redisstream.FieldID, m.ID.String(),
		}})
	}
	_, _ = pipe.Exec(ctx)
	errs := make([]error, len(msgs))
	for i, c := range cmds {
		errs[i] = c.Err()
	}
	return errs
}

func (p *plainRedis) Close() error { return p.rdb.Close() }

// plainKafka is the plain loop's Kafka publisher: ProduceSync of the
// batch's records (key = aggregate id), acks from all in-sync replicas.
type plainKafka struct{ cl *kgo.Client }

func newPlainKafka(cfg kafka.Config) (*plainKafka, error) {
	if cfg.TLS || cfg.TLSCAFile != "" || cfg.SASL.Mechanism != "" {
		return nil, &app.UsageError{Err: errors.New("bench: the plain loop reaches Kafka in plain text without SASL only")}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.Topic), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	return &plainKafka{cl: cl}, nil
}

func (p *plainKafka) Publish(ctx context.Context, msgs []outbox.Message) []error {
	recs := make([]*kgo.Record, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		recs[i] = &kgo.Record{Key: []byte(m.AggregateID), Value: m.Body, Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderContentType, Value: []byte(kafka.ContentType)},
			{Key: kafka.HeaderEventID, Value: []byte(m.ID.String())},
			{Key: kafka.HeaderEventType, Value: []byte(m.Type)},
		}}
	}
	res := p.cl.ProduceSync(ctx, recs...)
	errs := make([]error, len(msgs))
	for i := range res {
		errs[i] = res[i].Err
	}
	return errs
}

func (p *plainKafka) Close() error {
	p.cl.Close()
	return nil
}

// brokerLabel names the broker of a run in summaries.
func brokerLabel(br *broker) string {
	if br.embedded {
		return "embedded"
	}
	return strings.ToLower(br.kind.String())
}

// fnBox holds the function a webhook receiver hands its deliveries to.
type fnBox struct {
	mu sync.RWMutex
	fn func(hbroker.Delivery)
}

func (b *fnBox) set(fn func(hbroker.Delivery)) {
	b.mu.Lock()
	b.fn = fn
	b.mu.Unlock()
}

func (b *fnBox) call(d hbroker.Delivery) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.fn != nil {
		b.fn(d)
	}
}
