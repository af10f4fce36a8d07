package rabbitmq

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Reconnect backoff: doubling from reconnectMin up to reconnectMax, with
// jitter. closeTimeout bounds the close handshake.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
	closeTimeout = 5 * time.Second
)

// Publisher publishes outbox messages to a RabbitMQ exchange. It implements
// outbox.Publisher and is safe for concurrent use.
type Publisher struct {
	cfg      Config
	log      *slog.Logger
	password string // masked in every error and log line

	// mu is held for reading by every Publish call and for writing by
	// Close, so that Close waits for batches in flight.
	mu     sync.RWMutex
	closed bool

	// sess is the connection of the moment, nil while reconnecting.
	sess atomic.Pointer[session]
	// downMu guards down: why the connection was lost, or why the last
	// reconnect attempt failed.
	downMu sync.Mutex
	down   error

	// learned is the smallest max_message_size the broker reported when
	// it refused a message; zero until then.
	learned atomic.Int64
	// redeclare is set when the broker said the exchange does not exist
	// (someone deleted it); the next Publish declares it again.
	redeclare atomic.Bool

	// ctx ends the connection loop (Close); loopDone is closed when it has
	// closed the connection and returned.
	ctx      context.Context
	cancel   context.CancelFunc
	loopDone chan struct{}
	// wg counts the channels being closed in the background.
	wg sync.WaitGroup
}

// session is one AMQP connection and what hangs off it.
type session struct {
	conn    *amqp.Connection
	closes  chan *amqp.Error
	blocks  chan amqp.Blocking
	blocked atomic.Bool // the broker blocks publishing (resource alarm)
	idle    chan *pubChannel
}

// Connect dials the broker, declares the exchange (and Config.Queue) and
// returns a Publisher on a connection of its own. When the connection is
// lost the Publisher reconnects by itself, with backoff, for as long as it
// is open; meanwhile Publish fails at once with ErrNotConnected (not
// Permanent), so that the relay retries. Connect fails when the broker is
// unreachable, refuses the credentials, or the exchange cannot be declared
// (another type under the same name, say); ctx bounds it.
func Connect(ctx context.Context, cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a, _ := parseAddress(cfg.URL) // validated
	p := &Publisher{
		cfg:      cfg,
		log:      cfg.Logger.With("exchange", cfg.Exchange),
		password: a.password,
		loopDone: make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	s, err := p.open(ctx)
	if err != nil {
		p.cancel()
		return nil, err
	}
	p.sess.Store(s)
	go p.run(s)
	return p, nil
}

// Config returns the publisher's configuration with defaults applied.
func (p *Publisher) Config() Config { return p.cfg }

// open dials and declares; ctx (and ConnectTimeout) bound both.
func (p *Publisher) open(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	defer cancel()
	conn, err := dial(ctx, p.cfg, p.cfg.ConnectionName)
	if err != nil {
		return nil, err
	}
	// The declarations wait on the broker without a deadline of their own.
	abort := context.AfterFunc(ctx, func() { _ = conn.CloseDeadline(time.Now()) })
	err = declare(conn, p.cfg)
	if !abort() && err == nil {
		err = fmt.Errorf("rabbitmq: declare exchange %s: %w", p.cfg.Exchange, ctx.Err())
	}
	if err != nil {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return nil, mask(err, p.password)
	}
	s := &session{conn: conn, idle: make(chan *pubChannel, maxIdleChannels)}
	s.closes = conn.NotifyClose(make(chan *amqp.Error, 1))
	s.blocks = conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	return s, nil
}

// run watches the connection of the moment: it tracks the broker's
// blocking, replaces a lost connection, and closes it when the publisher
// closes.
func (p *Publisher) run(s *session) {
	defer close(p.loopDone)
	closes, blocks := s.closes, s.blocks
	for {
		select {
		case <-p.ctx.Done():
			_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
			return
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			s.blocked.Store(b.Active)
			if b.Active {
				p.log.Warn("rabbitmq: the broker blocks publishing", "reason", b.Reason)
			} else {
				p.log.Info("rabbitmq: the broker unblocked publishing")
			}
		case cause, ok := <-closes:
			if p.ctx.Err() != nil {
				closes = nil // the ctx case returns
				continue
			}
			err := errConnectionClosed
			if ok && cause != nil {
				err = mask(cause, p.password)
			}
			p.sess.Store(nil)
			p.setDown(err)
			p.log.Warn("rabbitmq: connection lost, reconnecting", "err", err)
			if s = p.reconnect(); s == nil {
				return
			}
			closes, blocks = s.closes, s.blocks
			p.sess.Store(s)
		}
	}
}

// reconnect dials until it succeeds, or returns nil once the publisher
// closes.
func (p *Publisher) reconnect() *session {
	wait := reconnectMin
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1)) //nolint:gosec // jitter needs no cryptographic randomness
		select {
		case <-p.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		s, err := p.open(p.ctx)
		if err == nil {
			p.log.Info("rabbitmq: reconnected", "attempts", attempt)
			return s
		}
		if p.ctx.Err() != nil {
			return nil
		}
		p.setDown(err)
		wait = min(2*wait, reconnectMax)
		p.log.Warn("rabbitmq: reconnect failed", "attempt", attempt, "err", err, "next_in", wait)
	}
}

func (p *Publisher) setDown(err error) {
	p.downMu.Lock()
	p.down = err
	p.downMu.Unlock()
}

// notConnected is the error of a publish while the connection is down.
func (p *Publisher) notConnected() error {
	p.downMu.Lock()
	defer p.downMu.Unlock()
	if p.down == nil {
		return fmt.Errorf("%w, reconnecting", ErrNotConnected)
	}
	return fmt.Errorf("%w, reconnecting (%w)", ErrNotConnected, p.down)
}

// Close waits for Publish calls in flight, then closes the connection (or
// stops reconnecting). Publish after Close fails with ErrClosed. Close is
// idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.cancel()
	<-p.loopDone
	p.wg.Wait()
	return nil
}
