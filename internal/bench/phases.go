package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// phases times the three steps of a drain batch: claim (the DELETE …
// RETURNING), publish (send and await the acks) and finish (the outcomes
// and the COMMIT). They tell where a drain spends its time without
// touching the engine: the relay runs on a timed Store and Publisher.
type phases struct {
	claim, publish, finish Samples
}

// PhaseMeans are the mean milliseconds per batch of each step.
type PhaseMeans struct {
	Batches   int     `json:"batches"`
	ClaimMs   float64 `json:"claim_ms"`
	PublishMs float64 `json:"publish_ms"`
	FinishMs  float64 `json:"finish_ms"`
}

func (p *phases) means() PhaseMeans {
	c, pub, f := p.claim.Summary(), p.publish.Summary(), p.finish.Summary()
	return PhaseMeans{Batches: c.N, ClaimMs: ms(c.Mean), PublishMs: ms(pub.Mean), FinishMs: ms(f.Mean)}
}

func (m PhaseMeans) String() string {
	return fmt.Sprintf("%d batches, per batch: claim %.2fms, publish %.2fms, finish+commit %.2fms", m.Batches, m.ClaimMs, m.PublishMs, m.FinishMs)
}

// timedStore is a Store whose claims and finishes are timed.
type timedStore struct {
	outbox.Store
	p *phases
}

// ClaimsSerially passes on the wrapped store's answer (outbox.SerialClaims).
func (s timedStore) ClaimsSerially() bool {
	sc, ok := s.Store.(outbox.SerialClaims)
	return ok && sc.ClaimsSerially()
}

func (s timedStore) Claim(ctx context.Context, cp outbox.ClaimParams) (outbox.Batch, error) {
	t0 := time.Now()
	b, err := s.Store.Claim(ctx, cp)
	if err != nil || len(b.Records()) == 0 {
		return b, err
	}
	s.p.claim.Add(time.Since(t0))
	return timedBatch{Batch: b, p: s.p}, nil
}

type timedBatch struct {
	outbox.Batch
	p *phases
}

func (b timedBatch) Finish(ctx context.Context, outcomes []outbox.Outcome) error {
	t0 := time.Now()
	err := b.Batch.Finish(ctx, outcomes)
	b.p.finish.Add(time.Since(t0))
	return err
}

// timedPublisher is a Publisher whose batches are timed.
type timedPublisher struct {
	outbox.Publisher
	p *phases
}

func (t timedPublisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	t0 := time.Now()
	errs := t.Publisher.Publish(ctx, msgs)
	t.p.publish.Add(time.Since(t0))
	return errs
}

// KeepsRuns passes on the wrapped publisher's answer (outbox.RunPublisher):
// without it the relay would send a run-keeping broker waves.
func (t timedPublisher) KeepsRuns() bool { return outbox.KeepsRuns(t.Publisher) }
