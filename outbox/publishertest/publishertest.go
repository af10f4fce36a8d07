// Package publishertest is the conformance suite every outbox.Publisher
// runs. A broker adapter's test calls Run with a Harness that starts its
// publisher on a namespace of its own (stream, topic, writer) and, when the
// broker can be read back, a consumer of that namespace:
//
//	func TestConformance(t *testing.T) {
//		publishertest.Run(t, publishertest.Harness{
//			New: func(t *testing.T) publishertest.Instance {
//				p := ... // publisher on a fresh stream, removed by t.Cleanup
//				return publishertest.Instance{
//					Publisher: p,
//					Consume:   func(t *testing.T) <-chan publishertest.Received { ... },
//				}
//			},
//			Features: publishertest.Features{Dedup: true, Persistent: true},
//		})
//	}
//
// The suite's tests run in parallel, each on an Instance of its own.
package publishertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/outbox"
)

// Harness tells the suite how to run one publisher.
type Harness struct {
	// New starts a publisher on a broker namespace no other Instance uses,
	// and releases the namespace with t.Cleanup. The suite closes the
	// publisher (perhaps twice); New's cleanups run after that.
	New func(t *testing.T) Instance
	// Features declares the guarantees the broker gives beyond the
	// Publisher contract; the suite checks each declared one.
	Features Features
	// Timeout bounds each wait for the broker (a Publish call, the
	// consumer receiving a batch); default 30s.
	Timeout time.Duration
}

// Features are guarantees a broker may or may not give.
type Features struct {
	// Dedup: the broker drops a message whose event id it already stored
	// (JetStream's Nats-Msg-Id within the duplicate window), so publishing
	// one event twice yields one delivery.
	Dedup bool
	// Persistent: the broker stores what it acknowledged, so a consumer
	// started after a Publish still receives it.
	Persistent bool
}

// Instance is one publisher under test and the means to read back what it
// published.
type Instance struct {
	Publisher outbox.Publisher
	// Consume starts a consumer of the Instance's namespace and returns the
	// channel it delivers to, in the order the broker delivers; the
	// consumer is stopped by t.Cleanup. Consume is called at most once per
	// Instance. With Features.Persistent the consumer also receives what
	// was published before Consume was called; otherwise it receives what
	// is published after Consume returns. Nil when the broker cannot be
	// read back: the suite then checks only the publisher's results.
	Consume func(t *testing.T) <-chan Received
	// Poison changes m so that the broker refuses it for good (a message
	// over the broker's size limit, an unroutable name, a webhook answering
	// 400), and the publisher must report that with an outbox.Permanent
	// error while the rest of the batch goes through. Nil when the broker
	// refuses nothing a valid event can carry; the suite then says so.
	Poison func(m *outbox.Message)
	// Disconnect breaks the publisher's connection from the broker's side
	// (the server closes it, or is restarted), as an outage would. The
	// publisher must reconnect by itself: publishes during the outage fail
	// with errors that are not Permanent (the relay retries them), and once
	// the broker is back they succeed. Nil only for a broker without a
	// lasting connection (a webhook); the suite then says so.
	Disconnect func(t *testing.T)
}

// Received is one message as the broker delivered it.
type Received struct {
	Body []byte // the CloudEvents document, as published
	// MsgID is the broker's own message id (Nats-Msg-Id, AMQP message-id)
	// if it has one; it must then be the event id. Empty otherwise.
	MsgID string
}

// Runs: when Instance.Publisher is an outbox.RunPublisher whose KeepsRuns
// is true, the suite also gives it runs (several events of one aggregate in
// one call) and checks that they arrive in order and, with Instance.Poison,
// that a poisoned event fails permanently while its aggregate's later
// events in the call fail with outbox.ErrRunBroken and are not stored.

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("publishertest: Harness.New is nil")
	}
	if h.Timeout <= 0 {
		h.Timeout = 30 * time.Second
	}
	s := &suite{h: h}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"BatchAcked", s.testBatchAcked},
		{"ResultLength", s.testResultLength},
		{"PerAggregateOrder", s.testPerAggregateOrder},
		{"ConcurrentPublish", s.testConcurrentPublish},
		{"Dedup", s.testDedup},
		{"Persistent", s.testPersistent},
		{"ContextCancelled", s.testContextCancelled},
		{"ContextExpired", s.testContextExpired},
		{"Close", s.testClose},
		{"PartialFailure", s.testPartialFailure},
		{"ReconnectAfterConnectionLost", s.testReconnect},
		{"RunsInOrder", s.testRunsInOrder},
		{"RunBrokenAfterPoison", s.testRunBrokenAfterPoison},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

// NewRecord returns a valid outbox record of aggregate ("order",
// aggregateID) at sequence seq, with a fresh UUIDv7 id and a JSON payload
// naming both.
func NewRecord(aggregateID string, seq int64) outbox.Record {
	payload, _ := json.Marshal(map[string]any{"order_id": aggregateID, "seq": seq, "note": "héllo \"wörld\" <&>"})
	return outbox.Record{
		Event: outbox.Event{
			ID:            uuid.Must(uuid.NewV7()),
			AggregateType: "order",
			AggregateID:   aggregateID,
			Type:          "order.status_changed",
			Payload:       payload,
			Headers:       map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		},
		Sequence:  seq,
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

// NewMessage encodes r the way the relay does.
func NewMessage(tb testing.TB, r outbox.Record) outbox.Message {
	tb.Helper()
	body, err := outbox.EncodeCloudEvent(&r, outbox.DefaultSource)
	if err != nil {
		tb.Fatalf("publishertest: encode %s: %v", r.ID, err)
	}
	return outbox.Message{Record: r, Body: body}
}

// Batch returns n messages of n distinct aggregates (prefix-0, prefix-1…),
// each at sequence seq.
func Batch(tb testing.TB, prefix string, n int, seq int64) []outbox.Message {
	tb.Helper()
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = NewMessage(tb, NewRecord(fmt.Sprintf("%s-%d", prefix, i), seq))
	}
	return msgs
}

type suite struct{ h Harness }

// start returns a fresh instance whose publisher is closed at cleanup.
func (s *suite) start(t *testing.T) Instance {
	t.Helper()
	in := s.h.New(t)
	if in.Publisher == nil {
		t.Fatal("publishertest: Harness.New returned no Publisher")
	}
	t.Cleanup(func() { _ = in.Publisher.Close() })
	return in
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// publishOK publishes msgs and fails t unless every message was acked.
func (s *suite) publishOK(t *testing.T, p outbox.Publisher, msgs []outbox.Message) {
	t.Helper()
	errs := p.Publish(s.ctx(t), msgs)
	if len(errs) != len(msgs) {
		t.Fatalf("Publish of %d messages returned %d results", len(msgs), len(errs))
	}
	failed := 0
	for i, err := range errs {
		if err != nil {
			if failed < 5 {
				t.Errorf("message %d (%s): %v", i, msgs[i].ID, err) //nolint:gosec // len(errs) == len(msgs), checked above
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d messages were not acked", failed, len(msgs))
	}
}

// receive reads from ch until every message in want has arrived (want ids
// may repeat: each occurrence must arrive), then for a short grace period
// to catch extra deliveries. It returns everything received, and fails t on
// a timeout, an unexpected event, or a body that differs from the one
// published.
func (s *suite) receive(t *testing.T, ch <-chan Received, want []outbox.Message) []outbox.CloudEvent {
	t.Helper()
	byID := make(map[string][]byte, len(want))
	missing := make(map[string]int, len(want))
	for _, m := range want {
		byID[m.ID.String()] = m.Body
		missing[m.ID.String()]++
	}
	outstanding := len(want)
	var got []outbox.CloudEvent
	timeout := time.NewTimer(s.h.Timeout)
	defer timeout.Stop()
	var grace <-chan time.Time
	if outstanding == 0 {
		grace = time.After(300 * time.Millisecond)
	}
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("consumer channel closed with %d of %d messages outstanding", outstanding, len(want))
			}
			ce, err := outbox.ParseCloudEvent(r.Body)
			if err != nil {
				t.Fatalf("received a body that is no CloudEvent: %v: %q", err, r.Body)
			}
			if r.MsgID != "" && r.MsgID != ce.ID {
				t.Fatalf("broker message id %q, want the event id %q", r.MsgID, ce.ID)
			}
			body, known := byID[ce.ID]
			switch {
			case !known:
				t.Errorf("received event %s (aggregate %s, sequence %d) that was not published here", ce.ID, ce.Subject, ce.Sequence)
			case string(body) != string(r.Body):
				t.Errorf("event %s: body changed in transit:\n got %s\nwant %s", ce.ID, r.Body, body)
			case missing[ce.ID] == 0:
				t.Errorf("event %s (aggregate %s, sequence %d) delivered more often than published", ce.ID, ce.Subject, ce.Sequence)
			default:
				missing[ce.ID]--
				outstanding--
			}
			got = append(got, ce)
			if outstanding == 0 && grace == nil {
				grace = time.After(300 * time.Millisecond)
			}
		case <-grace:
			return got
		case <-timeout.C:
			t.Fatalf("received %d of %d messages within %s", len(want)-outstanding, len(want), s.h.Timeout)
		}
	}
}

// testBatchAcked: a large batch of distinct aggregates is acked message by
// message and arrives complete and intact.
func (s *suite) testBatchAcked(t *testing.T) {
	in := s.start(t)
	var ch <-chan Received
	if in.Consume != nil {
		ch = in.Consume(t)
	}
	const n = 1000
	msgs := Batch(t, "batch", n, 1)
	s.publishOK(t, in.Publisher, msgs)
	if ch == nil {
		return
	}
	got := s.receive(t, ch, msgs)
	if len(got) != n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	sent := make(map[string]outbox.Message, n)
	for _, m := range msgs {
		sent[m.ID.String()] = m
	}
	for _, ce := range got {
		m := sent[ce.ID]
		if ce.Subject != m.AggregateID || ce.Sequence != 1 || ce.Type != m.Type || ce.AggregateType != "order" {
			t.Fatalf("event %s arrived as aggregate %q seq %d type %q, want %q seq 1 type %q",
				ce.ID, ce.Subject, ce.Sequence, ce.Type, m.AggregateID, m.Type)
		}
	}
}

// testResultLength: one result per message, whatever the batch size and
// outcome; an empty batch returns an empty result.
func (s *suite) testResultLength(t *testing.T) {
	in := s.start(t)
	ctx := s.ctx(t)
	if errs := in.Publisher.Publish(ctx, nil); len(errs) != 0 {
		t.Fatalf("Publish(nil) returned %d results, want 0", len(errs))
	}
	if errs := in.Publisher.Publish(ctx, []outbox.Message{}); len(errs) != 0 {
		t.Fatalf("Publish(empty) returned %d results, want 0", len(errs))
	}
	for _, n := range []int{1, 2, 7, 64} {
		msgs := Batch(t, fmt.Sprintf("len%d", n), n, 1)
		errs := in.Publisher.Publish(ctx, msgs)
		if len(errs) != n {
			t.Fatalf("Publish of %d messages returned %d results", n, len(errs))
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("batch of %d: message %d: %v", n, i, err)
			}
		}
	}
}

// testPerAggregateOrder: each aggregate's events, published one per call
// in sequence order, arrive in that order.
func (s *suite) testPerAggregateOrder(t *testing.T) {
	in := s.start(t)
	if in.Consume == nil {
		t.Skip("the broker cannot be read back")
	}
	ch := in.Consume(t)
	const aggregates, calls = 5, 30
	var all []outbox.Message
	for seq := int64(1); seq <= calls; seq++ {
		batch := make([]outbox.Message, 0, aggregates)
		// Vary the position of each aggregate within the call.
		for j := range aggregates {
			a := (j + int(seq)) % aggregates
			batch = append(batch, NewMessage(t, NewRecord(fmt.Sprintf("ord-%d", a), seq)))
		}
		s.publishOK(t, in.Publisher, batch)
		all = append(all, batch...)
	}
	got := s.receive(t, ch, all)
	next := map[string]int64{}
	for _, ce := range got {
		want := next[ce.Subject] + 1
		if ce.Sequence != want {
			t.Fatalf("aggregate %s: received sequence %d, want %d (events of one aggregate out of order)", ce.Subject, ce.Sequence, want)
		}
		next[ce.Subject] = want
	}
	for a := range aggregates {
		if id := fmt.Sprintf("ord-%d", a); next[id] != calls {
			t.Fatalf("aggregate %s: received up to sequence %d, want %d", id, next[id], calls)
		}
	}
}

// testConcurrentPublish: Publish is safe for concurrent calls (the relay's
// workers share one publisher), and every message of every call arrives.
func (s *suite) testConcurrentPublish(t *testing.T) {
	in := s.start(t)
	var ch <-chan Received
	if in.Consume != nil {
		ch = in.Consume(t)
	}
	const workers, perWorker = 4, 100
	batches := make([][]outbox.Message, workers)
	results := make([][]error, workers)
	for w := range batches {
		batches[w] = Batch(t, fmt.Sprintf("w%d", w), perWorker, 1)
	}
	ctx := s.ctx(t)
	done := make(chan int)
	for w := range workers {
		go func() {
			results[w] = in.Publisher.Publish(ctx, batches[w])
			done <- w
		}()
	}
	for range workers {
		<-done
	}
	var all []outbox.Message
	for w := range workers {
		if len(results[w]) != perWorker {
			t.Fatalf("worker %d: %d results for %d messages", w, len(results[w]), perWorker)
		}
		for i, err := range results[w] {
			if err != nil {
				t.Fatalf("worker %d message %d: %v", w, i, err)
			}
		}
		all = append(all, batches[w]...)
	}
	if ch != nil {
		if got := s.receive(t, ch, all); len(got) != workers*perWorker {
			t.Fatalf("received %d messages, want %d", len(got), workers*perWorker)
		}
	}
}

// testDedup: publishing one event twice (a relay crash between the ack and
// recording it) yields one delivery.
func (s *suite) testDedup(t *testing.T) {
	if !s.h.Features.Dedup {
		t.Skip("the broker does not drop duplicates")
	}
	in := s.start(t)
	if in.Consume == nil {
		t.Fatal("Features.Dedup needs Instance.Consume to check it")
	}
	ch := in.Consume(t)
	first := Batch(t, "dup", 3, 1)
	s.publishOK(t, in.Publisher, first)
	// The same events again, in a later call and another order, plus one new.
	again := []outbox.Message{first[2], first[0], NewMessage(t, NewRecord("dup-new", 1)), first[1]}
	s.publishOK(t, in.Publisher, again)

	got := s.receive(t, ch, append(first, again[2]))
	if len(got) != 4 {
		t.Fatalf("received %d messages, want 4 (3 events once each plus 1 new)", len(got))
	}
}

// testPersistent: a consumer started after the ack still gets the messages.
func (s *suite) testPersistent(t *testing.T) {
	if !s.h.Features.Persistent {
		t.Skip("the broker does not keep messages for later consumers")
	}
	in := s.start(t)
	if in.Consume == nil {
		t.Fatal("Features.Persistent needs Instance.Consume to check it")
	}
	msgs := Batch(t, "kept", 20, 1)
	s.publishOK(t, in.Publisher, msgs)
	if got := s.receive(t, in.Consume(t), msgs); len(got) != len(msgs) {
		t.Fatalf("late consumer received %d messages, want %d", len(got), len(msgs))
	}
}

// checkFailedRetryable checks that every message failed, with an error
// wrapping want that is not Permanent (a stopping relay must not
// dead-letter events).
func checkFailedRetryable(t *testing.T, what string, msgs []outbox.Message, errs []error, want error) {
	t.Helper()
	if len(errs) != len(msgs) {
		t.Fatalf("%s: %d results for %d messages", what, len(errs), len(msgs))
	}
	for i, err := range errs {
		switch {
		case err == nil:
			t.Fatalf("%s: message %d reported as acked", what, i)
		case outbox.IsPermanent(err):
			t.Fatalf("%s: message %d failed permanently (%v); it must stay retryable", what, i, err)
		case want != nil && !errors.Is(err, want):
			t.Fatalf("%s: message %d: error %q does not wrap %v", what, i, err, want)
		}
	}
}

// testContextCancelled: a cancelled context fails every message without
// panicking, and leaves the publisher usable.
func (s *suite) testContextCancelled(t *testing.T) {
	in := s.start(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	msgs := Batch(t, "cancel", 50, 1)
	checkFailedRetryable(t, "cancelled context", msgs, in.Publisher.Publish(ctx, msgs), context.Canceled)
	s.publishOK(t, in.Publisher, Batch(t, "after-cancel", 5, 1))
}

// testContextExpired: the same with a deadline in the past.
func (s *suite) testContextExpired(t *testing.T) {
	in := s.start(t)
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	msgs := Batch(t, "expired", 50, 1)
	checkFailedRetryable(t, "expired context", msgs, in.Publisher.Publish(ctx, msgs), context.DeadlineExceeded)
	s.publishOK(t, in.Publisher, Batch(t, "after-expired", 5, 1))
}

// testClose: Publish after Close fails every message, Close twice is safe.
func (s *suite) testClose(t *testing.T) {
	in := s.start(t)
	s.publishOK(t, in.Publisher, Batch(t, "before-close", 3, 1))
	if err := in.Publisher.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	msgs := Batch(t, "after-close", 10, 1)
	checkFailedRetryable(t, "Publish after Close", msgs, in.Publisher.Publish(s.ctx(t), msgs), nil)
	if errs := in.Publisher.Publish(s.ctx(t), nil); len(errs) != 0 {
		t.Fatalf("Publish(nil) after Close returned %d results, want 0", len(errs))
	}
	if err := in.Publisher.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// testPartialFailure: one message of a batch that the broker refuses for
// good fails permanently, alone; the others are acked and delivered.
func (s *suite) testPartialFailure(t *testing.T) {
	in := s.start(t)
	if in.Poison == nil {
		t.Skip("publishertest: this broker refuses nothing a valid event can carry (Instance.Poison is nil)")
	}
	msgs := Batch(t, "partial", 5, 1)
	in.Poison(&msgs[2])
	errs := in.Publisher.Publish(s.ctx(t), msgs)
	if len(errs) != len(msgs) {
		t.Fatalf("Publish of %d messages returned %d results", len(msgs), len(errs))
	}
	for i, err := range errs {
		switch {
		case i == 2 && !outbox.IsPermanent(err):
			t.Errorf("the poisoned message: %v, want an outbox.Permanent error", err)
		case i != 2 && err != nil:
			t.Errorf("message %d failed beside the poisoned one: %v", i, err)
		}
	}
	if in.Consume != nil {
		good := append(append([]outbox.Message{}, msgs[:2]...), msgs[3:]...)
		if !s.h.Features.Persistent {
			// A broker that keeps nothing delivers only what follows
			// Consume: publish the good ones again for the consumer.
			ch := in.Consume(t)
			s.publishOK(t, in.Publisher, good)
			s.receive(t, ch, good)
			return
		}
		s.receive(t, in.Consume(t), good)
	}
}

// testReconnect: after the broker drops the connection, publishes fail
// with retryable errors at most, and within the timeout succeed again
// without a new publisher.
func (s *suite) testReconnect(t *testing.T) {
	in := s.start(t)
	if in.Disconnect == nil {
		t.Skip("publishertest: this broker keeps no connection to lose (Instance.Disconnect is nil)")
	}
	var ch <-chan Received
	if in.Consume != nil && !s.h.Features.Persistent {
		ch = in.Consume(t)
	}
	before := Batch(t, "reconnect-before", 3, 1)
	s.publishOK(t, in.Publisher, before)
	in.Disconnect(t)

	after := Batch(t, "reconnect-after", 3, 1)
	deadline := time.Now().Add(s.h.Timeout)
	for attempt := 1; ; attempt++ {
		errs := in.Publisher.Publish(s.ctx(t), after)
		if len(errs) != len(after) {
			t.Fatalf("Publish of %d messages returned %d results", len(after), len(errs))
		}
		failed := 0
		for i, err := range errs {
			if err == nil {
				continue
			}
			failed++
			if outbox.IsPermanent(err) {
				t.Fatalf("attempt %d, message %d: a lost connection was reported as permanent: %v", attempt, i, err)
			}
		}
		if failed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d of %d messages failing %s after the connection was lost: %v", failed, len(after), s.h.Timeout, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if in.Consume == nil {
		return
	}
	if ch == nil {
		ch = in.Consume(t)
	}
	// A retried batch may repeat the messages that got through before the
	// outage ended (at least once); each must arrive, intact. What a
	// consumer without persistence saw of the batch before the outage
	// depends on whether it stayed connected through it.
	want := after
	if s.h.Features.Persistent {
		want = append(append([]outbox.Message{}, before...), after...)
	}
	s.receiveAtLeast(t, ch, want)
}

// receiveAtLeast reads from ch until every message of want has arrived at
// least once, checking each body against the one published; repeats and
// messages of other batches are allowed. It fails t on a timeout.
func (s *suite) receiveAtLeast(t *testing.T, ch <-chan Received, want []outbox.Message) {
	t.Helper()
	byID := make(map[string][]byte, len(want))
	for _, m := range want {
		byID[m.ID.String()] = m.Body
	}
	timeout := time.NewTimer(s.h.Timeout)
	defer timeout.Stop()
	for len(byID) > 0 {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("consumer channel closed with %d of %d messages outstanding", len(byID), len(want))
			}
			ce, err := outbox.ParseCloudEvent(r.Body)
			if err != nil {
				t.Fatalf("received a body that is no CloudEvent: %v: %q", err, r.Body)
			}
			if body, ok := byID[ce.ID]; ok {
				if string(body) != string(r.Body) {
					t.Fatalf("event %s: body changed in transit:\n got %s\nwant %s", ce.ID, r.Body, body)
				}
				delete(byID, ce.ID)
			}
		case <-timeout.C:
			t.Fatalf("received %d of %d messages within %s", len(want)-len(byID), len(want), s.h.Timeout)
		}
	}
}

// keepsRuns returns in's publisher as a RunPublisher, skipping t when it
// does not keep runs (the relay then gives it one event per aggregate).
func keepsRuns(t *testing.T, in Instance) outbox.RunPublisher {
	t.Helper()
	rp, ok := in.Publisher.(outbox.RunPublisher)
	if !ok || !rp.KeepsRuns() {
		t.Skip("publishertest: the publisher does not keep runs (no outbox.RunPublisher, or KeepsRuns is false)")
	}
	return rp
}

// AggregateRun returns the events from..to of aggregate id, in sequence order.
func AggregateRun(tb testing.TB, id string, from, to int64) []outbox.Message {
	tb.Helper()
	msgs := make([]outbox.Message, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		msgs = append(msgs, NewMessage(tb, NewRecord(id, seq)))
	}
	return msgs
}

// interleave merges runs into one call, round robin: each run keeps its
// order, other aggregates' events sit between its events.
func interleave(runs ...[]outbox.Message) []outbox.Message {
	var out []outbox.Message
	for i := 0; ; i++ {
		added := false
		for _, r := range runs {
			if i < len(r) {
				out = append(out, r[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

// testRunsInOrder: a publisher that keeps runs gets a hot aggregate's
// events in long runs, beside other aggregates' shorter runs, over three
// calls; every event arrives once, each aggregate's in sequence order.
func (s *suite) testRunsInOrder(t *testing.T) {
	in := s.start(t)
	rp := keepsRuns(t, in)
	var ch <-chan Received
	if in.Consume != nil {
		ch = in.Consume(t)
	}
	var all []outbox.Message
	for call := range int64(3) {
		from := call*100 + 1
		msgs := interleave(
			AggregateRun(t, "hot", from, from+99),
			AggregateRun(t, "warm-a", call*5+1, call*5+5),
			AggregateRun(t, "warm-b", call*5+1, call*5+5),
			AggregateRun(t, "single", call+1, call+1),
		)
		s.publishOK(t, rp, msgs)
		all = append(all, msgs...)
	}
	if ch == nil {
		return
	}
	next := map[string]int64{}
	for _, ce := range s.receive(t, ch, all) {
		if want := next[ce.Subject] + 1; ce.Sequence != want {
			t.Fatalf("aggregate %s: received sequence %d, want %d (a run out of order)", ce.Subject, ce.Sequence, want)
		}
		next[ce.Subject] = ce.Sequence
	}
	if next["hot"] != 300 {
		t.Fatalf("aggregate hot: received up to sequence %d, want 300", next["hot"])
	}
}

// testRunBrokenAfterPoison: a poisoned event in the middle of a run fails
// permanently; every later event of its aggregate in the call fails with
// an error wrapping outbox.ErrRunBroken, not Permanent, and is not stored;
// the earlier ones and the other aggregates' events are acked and stored.
func (s *suite) testRunBrokenAfterPoison(t *testing.T) {
	in := s.start(t)
	rp := keepsRuns(t, in)
	if in.Poison == nil {
		t.Skip("publishertest: this broker refuses nothing a valid event can carry (Instance.Poison is nil)")
	}
	var ch <-chan Received
	if in.Consume != nil {
		ch = in.Consume(t)
	}
	hot := AggregateRun(t, "hot", 1, 60)
	const poisoned = 24 // sequence 25
	in.Poison(&hot[poisoned])
	msgs := interleave(hot, AggregateRun(t, "calm", 1, 30), Batch(t, "other", 10, 1))
	errs := rp.Publish(s.ctx(t), msgs)
	if len(errs) != len(msgs) {
		t.Fatalf("Publish of %d messages returned %d results", len(msgs), len(errs))
	}
	var stored []outbox.Message
	for i, err := range errs {
		m := msgs[i]
		switch {
		case m.AggregateID != "hot" || m.Sequence < poisoned+1:
			if err != nil {
				t.Errorf("%s seq %d: %v, want acked", m.AggregateID, m.Sequence, err)
			}
			stored = append(stored, m)
		case m.Sequence == poisoned+1:
			if !outbox.IsPermanent(err) {
				t.Errorf("the poisoned event (hot seq %d): %v, want an outbox.Permanent error", m.Sequence, err)
			}
		default:
			if !errors.Is(err, outbox.ErrRunBroken) || outbox.IsPermanent(err) {
				t.Errorf("hot seq %d, after the poisoned one: %v, want a retryable error wrapping outbox.ErrRunBroken", m.Sequence, err)
			}
		}
	}
	if t.Failed() || ch == nil {
		return
	}
	// receive fails on any event not in stored: none of hot's later
	// events may reach the broker.
	next := map[string]int64{}
	for _, ce := range s.receive(t, ch, stored) {
		if want := next[ce.Subject] + 1; ce.Sequence != want {
			t.Fatalf("aggregate %s: received sequence %d, want %d", ce.Subject, ce.Sequence, want)
		}
		next[ce.Subject] = ce.Sequence
	}
}
