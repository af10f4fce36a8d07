package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/outbox"
)

// TestClassify: which outcomes are permanent, which are retried, which are
// tried alone first, which make Publish ask about the topic.
func TestClassify(t *testing.T) {
	t.Parallel()
	p := &Publisher{cfg: Config{}.withDefaults()}
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		err       error
		verdict   verdict
		permanent bool
	}{
		{nil, final, false},
		{kerr.TopicAuthorizationFailed, final, true},
		{kerr.InvalidTopicException, final, true},
		{kerr.MessageTooLarge, suspect, false},
		{fmt.Errorf("%w (uncompressed_bytes=1)", kerr.MessageTooLarge), suspect, false},
		{kerr.RecordListTooLarge, suspect, false},
		{kerr.InvalidRecord, suspect, false},
		{kerr.CorruptMessage, suspect, false},
		{kerr.UnknownTopicOrPartition, topicGone, false},
		{kerr.UnknownTopicID, topicGone, false},
		{kerr.NotLeaderForPartition, final, false},
		{kerr.NotEnoughReplicas, final, false},
		{kerr.NotEnoughReplicasAfterAppend, final, false},
		{kerr.RequestTimedOut, final, false},
		{kerr.OutOfOrderSequenceNumber, final, false},
		{kerr.ClusterAuthorizationFailed, final, false},
		{kerr.PolicyViolation, final, false},
		{kgo.ErrRecordTimeout, final, false},
		{kgo.ErrRecordRetries, final, false},
		{kgo.ErrClientClosed, final, false},
		{kgo.ErrMaxBuffered, final, false},
		{dial, final, false},
		{io.EOF, final, false},
		{context.Canceled, final, false}, // another call's, our ctx is alive
		{errors.New("something new"), final, false},
	} {
		v, err := p.classify(context.Background(), tc.err)
		if v != tc.verdict || outbox.IsPermanent(err) != tc.permanent {
			t.Errorf("%v: verdict %d permanent %t, want %d %t", tc.err, v, outbox.IsPermanent(err), tc.verdict, tc.permanent)
		}
		if (tc.err == nil) != (err == nil) {
			t.Errorf("%v became %v", tc.err, err)
		}
		if tc.err != nil && !errors.Is(tc.err, context.Canceled) && !errors.Is(err, tc.err) {
			t.Errorf("%v: %v does not wrap it", tc.err, err)
		}
	}
}

// TestClassifyContext: an outcome caused by our ctx wraps ctx.Err() and is
// retryable; one caused by another call's does not claim to be ours.
func TestClassifyContext(t *testing.T) {
	t.Parallel()
	p := &Publisher{cfg: Config{}.withDefaults()}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := p.classify(ctx, context.Canceled)
	if v != final || outbox.IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("own cancellation: %v (verdict %d)", err, v)
	}
	_, err = p.classify(context.Background(), context.DeadlineExceeded)
	if errors.Is(err, context.DeadlineExceeded) || outbox.IsPermanent(err) {
		t.Fatalf("another call's deadline: %v", err)
	}
}
