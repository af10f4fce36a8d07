package webhook

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/heraldhq/herald/outbox"
)

// Publisher delivers outbox messages to one webhook endpoint. It implements
// outbox.Publisher and is safe for concurrent use.
type Publisher struct {
	cfg      Config
	endpoint string // the redacted URL, for errors
	client   *http.Client
	owned    *http.Transport // the transport New made; Close releases its connections
	sem      chan struct{}   // a slot per delivery in flight, across Publish calls

	// mu is held for reading by every Publish call and for writing by
	// Close, so that Close waits for batches in flight.
	mu     sync.RWMutex
	closed bool
}

// New returns a Publisher for cfg. Nothing is dialled up front: an HTTP
// endpoint has no session to open, and an endpoint that is down now may be
// up by the first delivery. New fails only on a configuration no delivery
// could succeed with (a bad URL, no secret), errors wrapping ErrInvalidURL
// or ErrInvalidSecret.
func New(cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Publisher{
		cfg:      cfg,
		endpoint: cfg.Endpoint(),
		sem:      make(chan struct{}, cfg.Concurrency),
	}
	if cfg.Client != nil {
		c := *cfg.Client
		c.CheckRedirect = noRedirects
		p.client = &c
	} else {
		p.owned = NewTransport(cfg.Concurrency)
		p.client = &http.Client{Transport: p.owned, CheckRedirect: noRedirects}
	}
	return p, nil
}

// NewTransport returns the HTTP transport a Publisher makes for itself:
// http.DefaultTransport's settings (proxy from the environment, HTTP/2
// over TLS), with room for concurrency idle keep-alive connections to the
// endpoint, so that a batch reuses the connections of the previous one.
func NewTransport(concurrency int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = concurrency
	t.MaxIdleConns = max(t.MaxIdleConns, concurrency)
	return t
}

// noRedirects makes the client return a 3xx answer as it is: following a
// redirect would post the event to a URL nobody configured, and the
// specification counts a 3xx as a failure.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Config returns the publisher's configuration with defaults applied.
func (p *Publisher) Config() Config { return p.cfg }

// Publish POSTs every message to the endpoint, Config.Concurrency at a
// time, and returns one error per message: nil once the endpoint answered
// 2xx. A 3xx, or a 4xx other than 408 and 429, fails the message with an
// outbox.Permanent *StatusError; 408, 429 and 5xx with a retryable
// *StatusError (carrying the endpoint's Retry-After); no answer within
// Config.Timeout with ErrTimeout; a failed connection with ErrUnreachable.
// When ctx ends, the messages without an answer fail with errors wrapping
// ctx.Err(). Each message is tried once (save that the transport resends a
// request whose kept-alive connection turns out closed before any answer):
// the relay owns the retries and their delays.
//
// Two messages of one aggregate are never in flight at once. The relay
// never puts two in one batch; should a caller do so, they are sent one
// after the other in batch order, and after a failure the rest of that
// aggregate's messages fail with ErrHeldBack, unsent.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return outbox.AllFailed(len(msgs), ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return outbox.AllFailed(len(msgs), p.ctxError(err))
	}
	heads, next := chains(msgs)
	if len(heads) < len(msgs) {
		p.cfg.Logger.Warn("webhook: a batch holds several events of one aggregate; sending them one after the other",
			"events", len(msgs), "aggregates", len(heads))
	}
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range min(len(heads), p.cfg.Concurrency) {
		wg.Go(func() {
			for {
				h := int(taken.Add(1) - 1)
				if h >= len(heads) {
					return
				}
				p.sendChain(ctx, msgs, heads[h], next, errs)
			}
		})
	}
	wg.Wait()
	return errs
}

// chains links the messages of each aggregate: heads holds the first
// message of every aggregate, in batch order, and next[i] the index of the
// message following i of its aggregate, or -1.
func chains(msgs []outbox.Message) (heads, next []int) {
	type aggregate struct{ typ, id string }
	last := make(map[aggregate]int, len(msgs))
	heads = make([]int, 0, len(msgs))
	next = make([]int, len(msgs))
	for i := range msgs {
		next[i] = -1
		a := aggregate{msgs[i].AggregateType, msgs[i].AggregateID}
		if j, ok := last[a]; ok {
			next[j] = i
		} else {
			heads = append(heads, i)
		}
		last[a] = i
	}
	return heads, next
}

// Close waits for Publish calls in flight, then releases the idle
// connections of the publisher's own transport (a Config.Client is left
// alone). Publish after Close fails with ErrClosed. Close is idempotent and
// always returns nil.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.owned != nil {
		p.owned.CloseIdleConnections()
	}
	return nil
}

var _ outbox.Publisher = (*Publisher)(nil)
