package natsjs_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// withOthers puts one event of each of n other aggregates after every
// tenth event of run: a call as the relay builds it.
func withOthers(t *testing.T, run []outbox.Message, prefix string, n int) []outbox.Message {
	t.Helper()
	others := publishertest.Batch(t, prefix, n, 1)
	var out []outbox.Message
	for i, m := range run {
		out = append(out, m)
		if i%10 == 9 && len(others) > 0 {
			out = append(out, others[0])
			others = others[1:]
		}
	}
	return append(out, others...)
}

// readStream reads the whole stream of cfg: exactly want events, then
// nothing more for a moment. It fails t on an event not in want or one
// delivered twice, and returns the events in stream order.
func readStream(t *testing.T, url string, cfg natsjs.Config, want []outbox.Message) []outbox.CloudEvent {
	t.Helper()
	var got []outbox.CloudEvent
	for _, d := range readDeliveries(t, url, cfg, want) {
		got = append(got, d.Event)
	}
	return got
}

// readDeliveries is readStream returning the deliveries.
func readDeliveries(t *testing.T, url string, cfg natsjs.Config, want []outbox.Message) []natsjs.Delivery {
	t.Helper()
	wanted := make(map[string]bool, len(want))
	for _, m := range want {
		wanted[m.ID.String()] = true
	}
	ch := subscribe(t, url, cfg, natsjs.SubscribeOptions{})
	var got []natsjs.Delivery
	for range want {
		d := next(t, ch)
		if d.Err != nil {
			t.Fatalf("stream seq %d: %v", d.StreamSeq, d.Err)
		}
		if !wanted[d.Event.ID] {
			t.Fatalf("stream seq %d: event %s (%s seq %d) is stored, and must not be", d.StreamSeq, d.Event.ID, d.Event.Subject, d.Event.Sequence)
		}
		delete(wanted, d.Event.ID)
		got = append(got, d)
	}
	select {
	case d := <-ch:
		t.Fatalf("stream seq %d: event %s (%s seq %d) is stored too", d.StreamSeq, d.Event.ID, d.Event.Subject, d.Event.Sequence)
	case <-time.After(300 * time.Millisecond):
	}
	return got
}

// checkOrder checks that each aggregate's events come in sequence order
// without gaps, and returns each aggregate's last sequence.
func checkOrder(t *testing.T, got []outbox.CloudEvent) map[string]int64 {
	t.Helper()
	last := map[string]int64{}
	for _, ce := range got {
		if ce.Sequence != last[ce.Subject]+1 {
			t.Fatalf("aggregate %s: sequence %d after %d", ce.Subject, ce.Sequence, last[ce.Subject])
		}
		last[ce.Subject] = ce.Sequence
	}
	return last
}

// TestRunInOrder: on a server with atomic batches the publisher keeps
// runs, and the stream allows atomic publishes; one aggregate's 1,000
// events, given in runs of 250 beside other aggregates' events and sent
// in atomic batches of at most 100, are stored once each and in order.
func TestRunInOrder(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	cfg := uniqueConfig(t, url)
	cfg.MaxBatch = 100
	p := connect(t, url, cfg)
	if !p.KeepsRuns() {
		t.Fatalf("KeepsRuns is false on NATS %s", p.Conn().ConnectedServerVersion())
	}
	if info := streamInfo(t, url, cfg.Stream); !info.Config.AllowAtomicPublish {
		t.Fatal("the stream does not allow atomic publishes")
	}
	run := publishertest.AggregateRun(t, "hot", 1, 1000)
	var all []outbox.Message
	for call := range 4 {
		msgs := withOthers(t, run[call*250:(call+1)*250], fmt.Sprintf("other%d", call), 20)
		publishOK(t, p, msgs)
		all = append(all, msgs...)
	}
	got := readDeliveries(t, url, cfg, all)
	var events []outbox.CloudEvent
	batches := map[string]int{}
	for _, d := range got {
		events = append(events, d.Event)
		if d.Event.Subject == "hot" {
			batches[d.Header.Get("Nats-Batch-Id")]++
		}
	}
	if last := checkOrder(t, events); last["hot"] != 1000 {
		t.Fatalf("hot stored up to sequence %d, want 1000", last["hot"])
	}
	// 4 runs of 250 in batches of at most 100: 12 atomic batches.
	if len(batches) != 12 || batches[""] != 0 {
		t.Fatalf("hot's events were stored in %d batches (%d outside any), want 12 atomic batches", len(batches), batches[""])
	}
}

// TestRunBrokenByStreamLimit: the stream takes at most 600 messages of the
// hot aggregate's subject and refuses more (discard new per subject), so
// the atomic batch of its run is refused whole; the publisher finds the
// message refused, fails it, and every later message of the aggregate with
// ErrRunBroken, none of them stored; the 600 before it and the other
// aggregates' events (other subjects) are stored in order. A message after
// it over the max payload is not reported permanent: it was never sent.
func TestRunBrokenByStreamLimit(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	cfg := uniqueConfig(t, url)
	p := connect(t, url, cfg)
	js, err := jetstream.New(dial(t, url))
	if err != nil {
		t.Fatal(err)
	}
	sc := streamInfo(t, url, cfg.Stream).Config
	sc.MaxMsgsPerSubject, sc.Discard, sc.DiscardNewPerSubject = 600, jetstream.DiscardNew, true
	if _, err := js.UpdateStream(testCtx(t), sc); err != nil {
		t.Fatal(err)
	}

	run := publishertest.AggregateRun(t, "hot", 1, 1000)
	for i := range run {
		run[i].Type = "hot.changed" // a subject of its own
	}
	// A message the server would refuse for good, after the refused one:
	// never sent, it is broken too, not dead-lettered.
	poison(&run[899])
	msgs := withOthers(t, run, "other", 50)
	errs := p.Publish(testCtx(t), msgs)
	if len(errs) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(errs), len(msgs))
	}
	var stored []outbox.Message
	for i, err := range errs {
		m := msgs[i]
		switch {
		case m.AggregateID != "hot" || m.Sequence <= 600:
			if err != nil {
				t.Errorf("%s seq %d: %v, want acked", m.AggregateID, m.Sequence, err)
			}
			stored = append(stored, m)
		case m.Sequence == 601:
			if err == nil || errors.Is(err, outbox.ErrRunBroken) {
				t.Errorf("the first message over the limit: %v, want the stream's refusal", err)
			}
		default:
			if !errors.Is(err, outbox.ErrRunBroken) || outbox.IsPermanent(err) {
				t.Errorf("hot seq %d after the refused one: %v, want a retryable ErrRunBroken", m.Sequence, err)
			}
		}
	}
	if t.Failed() {
		return
	}
	if last := checkOrder(t, readStream(t, url, cfg, stored)); last["hot"] != 600 {
		t.Fatalf("hot stored up to sequence %d, want 600", last["hot"])
	}
}

// TestRunPoisonedMidBatch: a message over the server's max payload in the
// middle of a run fails permanently; the run's messages before it are
// stored, none after it.
func TestRunPoisonedMidBatch(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	cfg := uniqueConfig(t, url)
	p := connect(t, url, cfg)
	run := publishertest.AggregateRun(t, "hot", 1, 500)
	poison(&run[299])
	msgs := withOthers(t, run, "other", 20)
	errs := p.Publish(testCtx(t), msgs)
	var stored []outbox.Message
	for i, err := range errs {
		m := msgs[i]
		switch {
		case m.AggregateID != "hot" || m.Sequence < 300:
			if err != nil {
				t.Errorf("%s seq %d: %v, want acked", m.AggregateID, m.Sequence, err)
			}
			stored = append(stored, m)
		case m.Sequence == 300:
			if !outbox.IsPermanent(err) {
				t.Errorf("the poisoned message: %v, want permanent", err)
			}
		default:
			if !errors.Is(err, outbox.ErrRunBroken) || outbox.IsPermanent(err) {
				t.Errorf("hot seq %d after the poisoned one: %v, want a retryable ErrRunBroken", m.Sequence, err)
			}
		}
	}
	if t.Failed() {
		return
	}
	if last := checkOrder(t, readStream(t, url, cfg, stored)); last["hot"] != 299 {
		t.Fatalf("hot stored up to sequence %d, want 299", last["hot"])
	}
}

// TestRunPublishedAgain: a relay that crashed after the ack publishes the
// same run again, with new events of the aggregate after it. JetStream
// refuses an atomic batch that holds a message id it already stored (NATS
// 2.12+: "atomic publish batch contains duplicate message id"), so the
// publisher sends that batch again one message at a time: the duplicates
// are acked and dropped, the new events stored; every message is reported
// acked and the stream holds the run once, in order.
func TestRunPublishedAgain(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	cfg := uniqueConfig(t, url)
	p := connect(t, url, cfg)
	run := publishertest.AggregateRun(t, "hot", 1, 600)
	publishOK(t, p, run[:500])
	publishOK(t, p, run[:500]) // the same run again
	publishOK(t, p, run[200:]) // part of it again, and new events
	if last := checkOrder(t, readStream(t, url, cfg, run)); last["hot"] != 600 {
		t.Fatalf("hot stored up to sequence %d, want 600", last["hot"])
	}
}

// TestNoRunsWithoutAtomicBatches: the machine's NATS server (2.9) has no
// atomic batches; the publisher does not keep runs there.
func TestNoRunsWithoutAtomicBatches(t *testing.T) {
	t.Parallel()
	url := localURL()
	p := connect(t, url, uniqueConfig(t, url))
	if v := p.Conn().ConnectedServerVersion(); p.KeepsRuns() {
		t.Fatalf("KeepsRuns is true on NATS %s", v)
	}
}
