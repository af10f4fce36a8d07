package natsjs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/outbox"
)

// Headers of an atomic batch publish (ADR-50, NATS server 2.12 and later).
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

const (
	// DefaultMaxBatch is the server's default limit on the messages of
	// one atomic batch (jetstream.limits.max_batch_size).
	DefaultMaxBatch = 1000
	// maxOpenBatches bounds the atomic batches a publisher has open at
	// once; the server takes 50 per stream by default.
	maxOpenBatches = 8
	// batchHeaderRoom is room enough for the batch headers in a message's
	// size, checked before a batch is sent.
	batchHeaderRoom = 128
)

// errCodeBatchTooLarge is JetStream's error code for an atomic batch over
// the server's max_batch_size (JSAtomicPublishTooLargeBatchErrF).
const errCodeBatchTooLarge jetstream.ErrorCode = 10199

// atomicBatchesSupported reports whether a server of version v (as in its
// INFO, "2.12.0") takes atomic batch publishes: 2.12 and later.
func atomicBatchesSupported(v string) bool {
	v, _, _ = strings.Cut(v, "-")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 2 || major == 2 && minor >= 12
}

// KeepsRuns implements outbox.RunPublisher: true while the server the
// connection is on has atomic batch publishes (2.12 or later) and the
// stream allows them. Publish then sends each run of an aggregate as
// atomic batches: stored whole or not at all.
func (p *Publisher) KeepsRuns() bool {
	return p.atomic.Load() && atomicBatchesSupported(p.nc.ConnectedServerVersion())
}

// runsOf returns the indexes of each aggregate's messages in msgs, in
// order, for the aggregates with more than one message.
func runsOf(msgs []outbox.Message) [][]int {
	type key struct{ typ, id string }
	at := map[key]int{}
	var runs [][]int
	for i := range msgs {
		k := key{msgs[i].AggregateType, msgs[i].AggregateID}
		if j, ok := at[k]; ok {
			runs[j] = append(runs[j], i)
			continue
		}
		at[k] = len(runs)
		runs = append(runs, []int{i})
	}
	multi := runs[:0]
	for _, r := range runs {
		if len(r) > 1 {
			multi = append(multi, r)
		}
	}
	return multi
}

// publishRun publishes one aggregate's messages msgs[run[0]], msgs[run[1]]…
// in order, filling in their errs. They go in atomic batches of at most
// MaxBatch messages, each sent after the previous one's ack. A message no
// retry can make acceptable (no valid subject, over the maximum payload or
// the stream's max message size) ends the batch before it and fails
// permanently. Once a message fails, every later one fails with
// outbox.ErrRunBroken, unsent.
//
// Without atomic (the server has no atomic batches: the relay asked
// KeepsRuns before the connection moved to such a server) the messages go
// one at a time, each after the previous one's ack.
func (p *Publisher) publishRun(ctx context.Context, msgs []outbox.Message, run []int, errs []error, atomic bool) {
	if err := ctx.Err(); err != nil {
		for _, i := range run {
			errs[i] = ctxError(err)
		}
		return
	}
	batch := p.cfg.MaxBatch
	if !atomic {
		batch = len(run)
	}
	for start := 0; start < len(run); {
		end := min(start+batch, len(run))
		chunk := make([]*nats.Msg, 0, end-start)
		var bad error
		for k := start; k < end; k++ {
			m, err := p.runMsg(&msgs[run[k]])
			if err != nil {
				errs[run[k]], bad, end = err, err, k
				break
			}
			chunk = append(chunk, m)
		}
		var failed int // the index in run of a failed message, or -1
		switch {
		case len(chunk) == 0:
			failed = start
		case len(chunk) == 1 || !atomic:
			failed = p.publishEach(ctx, run[start:end], chunk, errs, start)
		default:
			failed = p.publishBatch(ctx, run[start:end], chunk, errs, start)
		}
		if failed < 0 && bad != nil {
			failed = end
		}
		if failed >= 0 {
			for _, i := range run[failed+1:] { // unsent, a message found bad too
				errs[i] = runBroken(&msgs[run[failed]], errs[run[failed]])
			}
			return
		}
		start = end
	}
}

// runMsg builds m's wire message with its Nats-Msg-Id, checking what the
// server would refuse for good.
func (p *Publisher) runMsg(m *outbox.Message) (*nats.Msg, error) {
	nm, err := p.natsMsg(m)
	if err != nil {
		return nil, err
	}
	nm.Header.Set(jetstream.MsgIDHeader, m.ID.String())
	size := int64(nm.Size() - len(nm.Subject) + batchHeaderRoom)
	if limit := p.nc.MaxPayload(); limit > 0 && size > limit {
		return nil, outbox.Permanent(fmt.Errorf("natsjs: %w (%d bytes with headers, the server takes %d)", nats.ErrMaxPayload, size, limit))
	}
	if limit := p.maxMsgSize.Load(); limit > 0 && size > int64(limit) {
		return nil, outbox.Permanent(fmt.Errorf("natsjs: %w (%d bytes with headers, the stream takes %d)", jetstream.ErrStreamMessageExceedsMaximum, size, limit))
	}
	return nm, nil
}

// batchAck is JetStream's answer to an atomic batch's commit.
type batchAck struct {
	Error    *jetstream.APIError `json:"error,omitempty"`
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	BatchID  string              `json:"batch"`
	Count    int                 `json:"count"`
}

// publishBatch sends chunk (the messages msgs[idx[k]]) as one atomic
// batch: every message but the last without a reply, the last with the
// commit header as a request, whose answer is the batch's. It returns -1
// when the batch was stored, or the index in the run (base + k) of the
// message that failed, the errors of the chunk set.
//
// A batch the server refused (an API error: a message id it already
// stored, a stream limit, a batch it lost part of) stored nothing, and
// says not which message caused it: the chunk is then published again one
// message at a time, each after the previous one's ack, which finds it and
// lets JetStream drop the duplicates one by one. A batch whose answer never
// came (ctx ended, connection lost) may have been stored, whole: each of
// its messages gets the error, none ErrRunBroken.
func (p *Publisher) publishBatch(ctx context.Context, idx []int, chunk []*nats.Msg, errs []error, base int) int {
	select {
	case p.batches <- struct{}{}:
		defer func() { <-p.batches }()
	case <-ctx.Done():
		errs[idx[0]] = ctxError(ctx.Err())
		return base
	}
	id := uuid.NewString()
	for k, m := range chunk {
		m.Header.Set(headerBatchID, id)
		m.Header.Set(headerBatchSeq, strconv.Itoa(k+1))
		if k == len(chunk)-1 {
			break
		}
		if err := p.nc.PublishMsg(m); err != nil {
			// Nothing is committed: the server drops the batch.
			errs[idx[0]] = p.classify(err)
			return base
		}
	}
	last := chunk[len(chunk)-1]
	last.Header.Set(headerBatchCommit, "1")
	rctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	resp, err := p.nc.RequestMsgWithContext(rctx, last)
	cancel()
	var ack batchAck
	if err == nil {
		if jerr := json.Unmarshal(resp.Data, &ack); jerr != nil {
			err = fmt.Errorf("natsjs: batch commit answered %q: %w", resp.Data, jerr)
		}
	}
	switch {
	case err == nil && ack.Error == nil && ack.Count == len(chunk):
		return -1
	case err == nil && ack.Error == nil:
		// Not an answer to an atomic batch: the server stored the
		// messages one by one, as they came.
		err = fmt.Errorf("natsjs: batch commit answered for %d messages, want %d (%q)", ack.Count, len(chunk), resp.Data)
	case err == nil:
		if ack.Error.ErrorCode == errCodeBatchTooLarge {
			p.cfg.Logger.Warn("natsjs: the server refused an atomic batch as too large; lower Config.MaxBatch",
				"max_batch", p.cfg.MaxBatch, "err", ack.Error)
		}
		return p.publishEach(ctx, idx, chunk, errs, base)
	}
	if ctx.Err() != nil {
		err = ctxError(ctx.Err())
	} else {
		err = p.classify(err)
	}
	for _, i := range idx {
		errs[i] = err
	}
	return base + len(idx) - 1 // the later messages of the run stay unsent
}

// publishEach publishes chunk one message at a time, each after the
// previous one's ack, without batch headers; it stops at the first failure
// and returns its index in the run (base + k), or -1.
func (p *Publisher) publishEach(ctx context.Context, idx []int, chunk []*nats.Msg, errs []error, base int) int {
	for k, m := range chunk {
		m.Header.Del(headerBatchID)
		m.Header.Del(headerBatchSeq)
		m.Header.Del(headerBatchCommit)
		if _, err := p.js.PublishMsg(ctx, m); err != nil {
			if ctx.Err() != nil {
				err = ctxError(ctx.Err())
			} else {
				err = p.classify(err)
			}
			errs[idx[k]] = err
			return base + k
		}
	}
	return -1
}

// runBroken is the error of a message not sent because the earlier message
// first of its aggregate failed with cause.
func runBroken(first *outbox.Message, cause error) error {
	return fmt.Errorf("%w: event %s (sequence %d) failed: %v", outbox.ErrRunBroken, first.ID, first.Sequence, cause) //nolint:errorlint // the predecessor's error is not this message's
}

var _ outbox.RunPublisher = (*Publisher)(nil)
