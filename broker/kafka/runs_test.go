package kafka_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// withOthers puts one event of each of n other aggregates after every
// tenth event of run: a call as the relay builds it, a hot aggregate's run
// with other aggregates' events between its events.
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

// readEverything reads the whole topic until every message of want has
// arrived, then a moment longer, and returns every record read, wanted or
// not, in each partition's order.
func readEverything(t *testing.T, cfg kafka.Config, want []outbox.Message) []broker.Delivery {
	t.Helper()
	missing := make(map[string]bool, len(want))
	for _, m := range want {
		missing[m.ID.String()] = true
	}
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	var got []broker.Delivery
	for len(missing) > 0 {
		d := publishertest.Next(t, ch)
		if d.Err != nil {
			t.Fatalf("%s: %v", d.Where, d.Err)
		}
		got = append(got, d)
		delete(missing, d.Event.ID)
	}
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case d := <-ch:
			got = append(got, d)
		case <-deadline:
			return got
		}
	}
}

// TestRunInOrder: one aggregate's 1,000 events, given in runs of 250 with
// other aggregates' events between them, arrive once each and in order.
func TestRunInOrder(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	if !p.KeepsRuns() {
		t.Fatal("KeepsRuns is false")
	}
	run := publishertest.AggregateRun(t, "hot", 1, 1000)
	var all []outbox.Message
	for call := range 4 {
		msgs := withOthers(t, run[call*250:(call+1)*250], fmt.Sprintf("other%d", call), 20)
		publishOK(t, p, msgs)
		all = append(all, msgs...)
	}
	checkExactlyInOrder(t, cfg, all)
}

// TestRunBrokenByBroker: the broker refuses, for good, every produce
// request that carries one event in the middle of a run (its whole batch,
// and with it every later batch of the partition the client had sent). That
// event fails permanently; every later event of its aggregate fails with
// ErrRunBroken and none of them is stored; the events before it and every
// other aggregate's events are acked and stored, in order.
func TestRunBrokenByBroker(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "warm", 3, 1))

	run := publishertest.AggregateRun(t, "hot", 1, 1000)
	const bad = 600 // sequence 601
	target := run[bad].ID.String()
	c.Fault(kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Topic: cfg.Topic,
		Err:   kerr.InvalidRecord,
		Count: -1,
		When:  func(req kmsg.Request) bool { return carriesEvent(req, target) },
	})
	msgs := withOthers(t, run, "other", 50)
	checkRunBroken(t, cfg, msgs, p.Publish(testCtx(t), msgs), run[bad], kerr.InvalidRecord)
	publishOK(t, p, publishertest.Batch(t, "after", 10, 1)) // the producer goes on
}

// TestRunBrokenByClient: an event in the middle of a run is over the
// topic's max.message.bytes, which the client refuses before sending it.
// The client would send the rest of the run after it; the publisher sends
// none of the aggregate's later events, reported with ErrRunBroken.
func TestRunBrokenByClient(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	if err := c.CreateTopic(cfg.Topic, 3, map[string]string{"max.message.bytes": "65536"}); err != nil {
		t.Fatal(err)
	}
	p := connect(t, cfg)
	run := publishertest.AggregateRun(t, "hot", 1, 1000)
	const bad = 400
	poison(&run[bad])
	msgs := withOthers(t, run, "other", 50)
	checkRunBroken(t, cfg, msgs, p.Publish(testCtx(t), msgs), run[bad], kerr.MessageTooLarge)
}

// checkRunBroken checks errs of msgs, in which bad failed with want: bad
// fails permanently, its aggregate's later events with ErrRunBroken (not
// permanent), every other message is acked; at the broker, exactly the
// acked ones, each aggregate's in order, and none of the broken ones.
func checkRunBroken(t *testing.T, cfg kafka.Config, msgs []outbox.Message, errs []error, bad outbox.Message, want error) {
	t.Helper()
	if len(errs) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(errs), len(msgs))
	}
	var acked []outbox.Message
	broken := map[string]bool{}
	for i, err := range errs {
		m := msgs[i]
		switch {
		case m.ID == bad.ID:
			if !outbox.IsPermanent(err) || !errors.Is(err, want) {
				t.Errorf("the failing event: %v, want a permanent %v", err, want)
			}
		case m.AggregateID == bad.AggregateID && m.Sequence > bad.Sequence:
			if !errors.Is(err, outbox.ErrRunBroken) || outbox.IsPermanent(err) {
				t.Errorf("%s seq %d after the failing one: %v, want a retryable ErrRunBroken", m.AggregateID, m.Sequence, err)
			}
			broken[m.ID.String()] = true
		default:
			if err != nil {
				t.Errorf("%s seq %d: %v, want acked", m.AggregateID, m.Sequence, err)
			}
			acked = append(acked, m)
		}
	}
	if t.Failed() {
		return
	}
	want2 := map[string]bool{}
	for _, m := range acked {
		want2[m.ID.String()] = true
	}
	last := map[string]int64{}
	for _, d := range readEverything(t, cfg, acked) {
		switch {
		case broken[d.Event.ID]:
			t.Fatalf("%s seq %d was stored after its predecessor failed (%s)", d.Event.Subject, d.Event.Sequence, d.Where)
		case d.Event.ID == bad.ID.String():
			t.Fatalf("the failing event was stored (%s)", d.Where)
		case !want2[d.Event.ID]:
			if !strings.HasPrefix(d.Event.Subject, "warm") {
				t.Fatalf("unexpected event %s of %s", d.Event.ID, d.Event.Subject)
			}
			continue
		}
		a, seq := d.Event.Subject, d.Event.Sequence
		if seq != last[a]+1 {
			t.Fatalf("aggregate %s: sequence %d after %d (%s)", a, seq, last[a], d.Where)
		}
		last[a] = seq
	}
	if last[bad.AggregateID] != bad.Sequence-1 {
		t.Fatalf("aggregate %s stored up to sequence %d, want %d", bad.AggregateID, last[bad.AggregateID], bad.Sequence-1)
	}
}

// TestRunPublishedAgain: a run published twice, as a relay that crashed
// after the acks does. Kafka does not drop a republished event (the
// idempotent producer drops only its own retries): the run is stored twice,
// each copy in order, the second after the first, so a consumer that drops
// event ids it has seen reads the run once, in order.
func TestRunPublishedAgain(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)
	run := publishertest.AggregateRun(t, "hot", 1, 500)
	publishOK(t, p, run)
	publishOK(t, p, run)
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	seen := map[string]bool{}
	var last int64
	for range 2 * len(run) {
		d := publishertest.Next(t, ch)
		if seen[d.Event.ID] {
			continue // the consumer drops it
		}
		seen[d.Event.ID] = true
		if d.Event.Sequence != last+1 {
			t.Fatalf("after dropping duplicates: sequence %d after %d", d.Event.Sequence, last)
		}
		last = d.Event.Sequence
	}
	if last != 500 {
		t.Fatalf("read the run twice up to sequence %d, want 500", last)
	}
	nothing(t, ch)
}

// carriesEvent reports whether a produce request carries the record of
// event id (its ce_id header).
func carriesEvent(req kmsg.Request, id string) bool {
	pr, ok := req.(*kmsg.ProduceRequest)
	if !ok {
		return false
	}
	for _, t := range pr.Topics {
		for _, p := range t.Partitions {
			var b kmsg.RecordBatch
			if err := b.ReadFrom(p.Records); err != nil {
				continue
			}
			recs, err := kfake.BatchRecords(b)
			if err != nil {
				continue
			}
			for _, r := range recs {
				for _, h := range r.Headers {
					if h.Key == kafka.HeaderEventID && string(h.Value) == id {
						return true
					}
				}
			}
		}
	}
	return false
}
