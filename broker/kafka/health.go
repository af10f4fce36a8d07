package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/outbox"
)

// ErrUnreachable fails the messages of a Publish call while no broker can
// be reached. It wraps outbox.ErrBrokerUnavailable: the relay takes it for
// an outage and charges no attempt.
var ErrUnreachable = fmt.Errorf("kafka: no broker reachable (%w)", outbox.ErrBrokerUnavailable)

// health notices an outage. franz-go retries a lost broker by itself, for
// as long as a record's delivery timeout allows, and says nothing to the
// caller meanwhile; so when one of its connection attempts fails, the next
// Publish (or one waiting for acks) asks whether any broker answers at
// all, and fails at once if none does instead of waiting out its deadline.
type health struct {
	mu      sync.Mutex
	failing bool          // a connection attempt failed since the last good check
	signal  chan struct{} // closed when failing becomes true
	timeout time.Duration // bounds one check
}

func newHealth(timeout time.Duration) *health {
	return &health{signal: make(chan struct{}), timeout: timeout}
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h *health) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.failing {
		h.failing = true
		close(h.signal)
	}
}

// failed is closed at the first failed connection attempt after the last
// good check.
func (h *health) failed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.signal
}

// check returns nil unless a connection attempt failed since the last good
// check and now no broker answers a metadata request within the dial
// timeout (ErrUnreachable), or ctx ended first.
func (h *health) check(ctx context.Context, cl *kgo.Client) error {
	h.mu.Lock()
	failing := h.failing
	h.mu.Unlock()
	if !failing {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	if err := anyBrokerAnswers(pctx, cl); err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx.Err())
		}
		return fmt.Errorf("%w: %v", ErrUnreachable, err) //nolint:errorlint // the probe's own timeout is not the caller's ctx error, so it is not wrapped
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing {
		h.failing = false
		h.signal = make(chan struct{})
	}
	return nil
}

// anyBrokerAnswers asks every known broker at once for metadata, and
// returns nil as soon as one answers: a broker that swallows connection
// attempts (its host is gone) holds no one up.
func anyBrokerAnswers(ctx context.Context, cl *kgo.Client) error {
	brokers := append(cl.DiscoveredBrokers(), cl.SeedBrokers()...)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the other requests end with it
	answers := make(chan error, len(brokers))
	for _, b := range brokers {
		go func() {
			req := kmsg.NewPtrMetadataRequest()
			req.Topics = []kmsg.MetadataRequestTopic{} // none: brokers only
			_, err := b.Request(ctx, req)
			answers <- err
		}()
	}
	err := errors.New("no broker known")
	for range brokers {
		if err = <-answers; err == nil {
			return nil
		}
	}
	return err
}
