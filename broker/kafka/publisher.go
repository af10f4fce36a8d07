package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/outbox"
)

// ErrClosed is returned for messages published after Close.
var ErrClosed = errors.New("kafka: publisher closed")

// defaultMaxMessageBytes is Kafka's own default max.message.bytes, assumed
// when the topic's cannot be read (no DescribeConfigs permission).
const defaultMaxMessageBytes = 1048588

// Publisher publishes outbox messages to a Kafka topic. It implements
// outbox.RunPublisher and is safe for concurrent use.
type Publisher struct {
	cl     *kgo.Client // metadata, health, the topic; Client
	cfg    Config
	health *health

	// maxBytes is the topic's max.message.bytes, read by Connect; the
	// client sizes its batches by it.
	maxBytes atomic.Int32

	// mu is held for reading by every Publish call and for writing by
	// Close, so that Close waits for batches in flight.
	mu     sync.RWMutex
	closed bool

	// Publish produces on a client of its own for the call (see
	// acquire): idle holds the clients no call uses; gen is bumped when
	// the topic was recreated, and a client of an older gen is closed
	// instead of being used again; closing counts the clients being
	// closed in the background.
	poolMu  sync.Mutex
	idle    []*producer
	gen     atomic.Uint64
	closing sync.WaitGroup

	// probing lets one Publish call at a time try refused records alone
	// (see isolate).
	probing chan struct{}
}

// Connect returns a Publisher on a client of its own. It fails when no
// broker answers within ctx, or the topic is missing and cannot (or, with
// NoCreateTopic, may not) be created. The client reconnects by itself after
// an outage; Close releases it.
func Connect(ctx context.Context, cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, health: newHealth(cfg.DialTimeout), probing: make(chan struct{}, 1)}
	p.maxBytes.Store(defaultMaxMessageBytes)
	opts, err := producerOptions(cfg, p.batchMaxBytes, false)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(p.health))...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := ensureTopic(ctx, cl, cfg); err != nil {
		cl.Close()
		return nil, err
	}
	if n, err := topicMaxMessageBytes(ctx, cl, cfg.Topic); err != nil {
		cfg.Logger.Warn("kafka: cannot read the topic's max.message.bytes; assuming Kafka's default",
			"topic", cfg.Topic, "default", defaultMaxMessageBytes, "err", err)
	} else {
		p.maxBytes.Store(n)
	}
	p.cl = cl
	return p, nil
}

// newProducer starts a producing client that sends only when flushed and
// whose batches are at most maxBatchBytes(topic) long.
func (p *Publisher) newProducer(maxBatchBytes func(string) int32) (*producer, error) {
	opts, err := producerOptions(p.cfg, maxBatchBytes, true)
	if err != nil {
		return nil, err
	}
	pr := &producer{gen: p.gen.Load()}
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(p.health, pr))...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	pr.cl = cl
	return pr, nil
}

// acquire returns a producing client no other call uses: one call's
// records are all buffered before any is sent (see produce), which another
// call's flush on a shared client would undo.
func (p *Publisher) acquire() (*producer, error) {
	p.poolMu.Lock()
	for len(p.idle) > 0 {
		pr := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if pr.gen == p.gen.Load() {
			p.poolMu.Unlock()
			return pr, nil
		}
		p.discard(pr)
	}
	p.poolMu.Unlock()
	return p.newProducer(p.batchMaxBytes)
}

// release makes pr available to the next call, or closes it when the call
// left records in it (it gave up waiting) or the topic was recreated.
func (p *Publisher) release(pr *producer, clean bool) {
	p.poolMu.Lock()
	defer p.poolMu.Unlock()
	if !clean || pr.gen != p.gen.Load() {
		p.discard(pr)
		return
	}
	p.idle = append(p.idle, pr)
}

// discard closes pr in the background: records it still holds are
// dropped, and one already sent may still be written (at least once).
func (p *Publisher) discard(pr *producer) {
	p.closing.Go(pr.cl.Close)
}

// batchMaxBytes is franz-go's per-topic batch limit: the topic's limit,
// within the range franz-go accepts.
func (p *Publisher) batchMaxBytes(string) int32 {
	return clampBatchBytes(p.maxBytes.Load())
}

func clampBatchBytes(n int32) int32 { return min(max(n, 512), 1<<30) }

// Config returns the publisher's configuration with defaults applied.
func (p *Publisher) Config() Config { return p.cfg }

// Client returns the franz-go client the publisher reads the topic's
// metadata with. Publish produces on clients of its own.
func (p *Publisher) Client() *kgo.Client { return p.cl }

// KeepsRuns implements outbox.RunPublisher: Publish may be given several
// consecutive events of one aggregate. They share a partition; the
// idempotent producer keeps them in order, and once one fails none of the
// later ones is stored (see Publish).
func (p *Publisher) KeepsRuns() bool { return true }

// Publish produces every message, then awaits all the acks, and returns
// one error per message: nil once every in-sync replica has the record.
//
// Errors are retryable except for records Kafka will never take (over the
// topic's max.message.bytes, refused as invalid, a topic this client may
// not write, a topic deleted under NoCreateTopic), which are wrapped with
// outbox.Permanent. A record refused together with the rest of its batch
// is tried again alone before it is called permanent, so that it never
// takes its batch-mates down with it.
//
// When ctx ends, or every broker is found unreachable, each message still
// unacknowledged fails at once (with an error wrapping ctx.Err(), or
// ErrUnreachable). Such a record may still be written later, by the
// client's retries: at least once, never reported acked when it was not.
// When the broker reports the topic missing, Publish creates it again
// (unless NoCreateTopic: then the messages fail permanently).
//
// msgs may hold runs, several consecutive events of one aggregate (see
// KeepsRuns and the package doc): they are stored in order, and after the
// first of them that fails, the later ones fail with an error wrapping
// outbox.ErrRunBroken and are not stored.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	if len(msgs) == 0 {
		return []error{}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return outbox.AllFailed(len(msgs), ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return outbox.AllFailed(len(msgs), ctxError(err))
	}
	if err := p.health.check(ctx, p.cl); err != nil {
		return outbox.AllFailed(len(msgs), err)
	}

	pr, err := p.acquire()
	if err != nil {
		return outbox.AllFailed(len(msgs), err)
	}
	errs, done, clean := p.produce(ctx, pr, msgs)
	p.release(pr, clean)
	var suspects, gone []int
	for i, err := range errs {
		if !done[i] || errors.Is(err, outbox.ErrRunBroken) {
			continue // already says why it was given up
		}
		var v verdict
		switch v, errs[i] = p.classify(ctx, err); v {
		case suspect:
			suspects = append(suspects, i)
		case topicGone:
			gone = append(gone, i)
		}
	}
	if len(gone) > 0 {
		err := p.topicGone(ctx, errs[gone[0]])
		for _, i := range gone {
			errs[i] = err
		}
	}
	if len(suspects) > 0 {
		p.isolate(ctx, msgs, errs, suspects)
	}
	p.breakRuns(msgs, errs, done)
	return errs
}

// Close waits for Publish calls in flight, then closes the client; records
// it still holds (given up by Publish) are dropped. Publish after Close
// fails with ErrClosed. Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.poolMu.Lock()
	for _, pr := range p.idle {
		p.discard(pr)
	}
	p.idle = nil
	p.poolMu.Unlock()
	p.closing.Wait()
	p.cl.Close()
	return nil
}
