package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// ErrNotConnected fails the messages published while a Dialed publisher has
// not connected yet. It wraps outbox.ErrBrokerUnavailable: the relay takes
// it for an outage and charges no attempt.
var ErrNotConnected = fmt.Errorf("broker: not connected yet (%w)", outbox.ErrBrokerUnavailable)

// Dial backoff: the first retry after dialMinDelay, doubling to dialMaxDelay.
const (
	dialMinDelay = 500 * time.Millisecond
	dialMaxDelay = 30 * time.Second
)

// Dialed is a Publisher whose connection is made in the background, so that
// a process starts while its broker is down: the outbox keeps the events
// until the broker is reachable. Until connect succeeds, Publish fails every
// message with ErrNotConnected; afterwards it is the connected publisher's,
// which reconnects by itself after an outage.
type Dialed struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	pub     outbox.Publisher
	lastErr error
	closed  bool
}

// Dial starts connecting with connect: at once, then with backoff until it
// succeeds or Close is called. Each failure is logged at warn, with the
// next attempt's delay; connect's error must not carry secrets. connect
// must return when its context ends (Close waits for it). A nil logger
// discards the log.
func Dial(connect func(ctx context.Context) (outbox.Publisher, error), log *slog.Logger) *Dialed {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dialed{log: log, ctx: ctx, cancel: cancel, done: make(chan struct{}), lastErr: ErrNotConnected}
	go d.dial(connect)
	return d
}

func (d *Dialed) dial(connect func(ctx context.Context) (outbox.Publisher, error)) {
	defer close(d.done)
	delay := dialMinDelay
	for attempt := 1; ; attempt++ {
		pub, err := connect(d.ctx)
		if err != nil && pub != nil {
			_ = pub.Close() // a connect that failed half way keeps nothing open
		}
		if err == nil {
			d.mu.Lock()
			if d.closed {
				d.mu.Unlock()
				_ = pub.Close()
				return
			}
			d.pub, d.lastErr = pub, nil
			d.mu.Unlock()
			if attempt > 1 {
				d.log.Info("broker: connected", "attempts", attempt)
			}
			return
		}
		if d.ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		d.lastErr = fmt.Errorf("%w: %w", ErrNotConnected, err)
		d.mu.Unlock()
		// Half fixed, half random, so that many processes restarted at
		// once do not knock on the broker together.
		wait := delay/2 + rand.N(delay/2+1) //nolint:gosec // jitter needs no cryptographic randomness
		d.log.Warn("broker: cannot connect; events wait in the outbox", "err", err, "attempt", attempt, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-d.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, dialMaxDelay)
	}
}

// Connected returns the connected publisher, or nil while Dial is still
// trying; err says why the last attempt failed.
func (d *Dialed) Connected() (pub outbox.Publisher, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pub, d.lastErr
}

// ErrClosed fails the messages published after Close.
var ErrClosed = errors.New("broker: publisher closed")

// Publish hands msgs to the connected publisher, or fails each with
// ErrNotConnected (wrapping the last connection error) until there is one,
// and with ErrClosed after Close.
func (d *Dialed) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if d.isClosed() {
		return outbox.AllFailed(len(msgs), ErrClosed)
	}
	pub, err := d.Connected()
	if pub == nil {
		return outbox.AllFailed(len(msgs), err)
	}
	return pub.Publish(ctx, msgs)
}

func (d *Dialed) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Close stops dialling and closes the connected publisher, if any. It is
// safe to call twice.
func (d *Dialed) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.done
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	<-d.done
	d.mu.Lock()
	pub := d.pub
	d.pub = nil // Publish after Close must not reach a closed publisher
	d.mu.Unlock()
	if pub != nil {
		return pub.Close()
	}
	return nil
}
