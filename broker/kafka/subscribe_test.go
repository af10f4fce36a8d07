package kafka_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestSubscribeOptions: from the start or from the end, all types or some;
// a record that is no CloudEvent is delivered with Err set.
func TestSubscribeOptions(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	cfg := config(c)
	p := connect(t, cfg)

	created := publishertest.NewRecord("s-1", 1)
	created.Type = "order.created"
	msgs := []outbox.Message{publishertest.NewMessage(t, created)}
	msgs = append(msgs, publishertest.Batch(t, "s", 2, 2)...) // order.status_changed
	publishOK(t, p, msgs)
	foreign := &kgo.Record{Topic: cfg.Topic, Key: []byte("junk"), Value: []byte("not json")}
	if err := p.Client().ProduceSync(testCtx(t), foreign).FirstErr(); err != nil {
		t.Fatal(err)
	}

	all := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	seen := map[string]broker.Delivery{}
	for range len(msgs) + 1 {
		d := publishertest.Next(t, all)
		if d.Err != nil {
			if string(d.Body) != "not json" || d.MsgID != "" {
				t.Fatalf("delivery with error: %+v", d)
			}
			continue
		}
		if !strings.HasPrefix(d.Where, cfg.Topic+"/") || !strings.Contains(d.Where, "@") || d.Stored.IsZero() {
			t.Fatalf("delivery %+v", d)
		}
		if d.MsgID != d.Event.ID {
			t.Fatalf("MsgID %q, event id %q", d.MsgID, d.Event.ID)
		}
		seen[d.Event.ID] = d
	}
	for _, m := range msgs {
		if _, ok := seen[m.ID.String()]; !ok {
			t.Fatalf("event %s not delivered", m.ID)
		}
	}

	typed := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true, Types: []string{"order.created"}})
	if d := publishertest.Next(t, typed); d.Event.ID != created.ID.String() {
		t.Fatalf("Types filter delivered %s (%s)", d.Event.Type, d.Where)
	}
	nothing(t, typed)

	fresh := subscribe(t, cfg, broker.SubscribeOptions{})
	later := publishertest.Batch(t, "later", 1, 1)
	publishOK(t, p, later)
	if d := publishertest.Next(t, fresh); d.Event.ID != later[0].ID.String() {
		t.Fatalf("a subscription from the end delivered %s, want only the later event %s", d.Event.ID, later[0].ID)
	}
	nothing(t, fresh)
}
