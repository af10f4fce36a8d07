package redisstream_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

func TestSubscribe(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	p := connect(t, cfg)
	created := publishertest.NewRecord("s-1", 1)
	created.Type = "order.created"
	msgs := []outbox.Message{publishertest.NewMessage(t, created)}
	msgs = append(msgs, publishertest.Batch(t, "s", 2, 2)...) // order.status_changed
	begin := time.Now()
	publishOK(t, p, msgs)
	// Entries another program added: one without an event field, one whose
	// event is no CloudEvent.
	rdb := admin(t, cfg.Addr)
	for _, values := range [][]any{{"foo", "bar"}, {"event", "not json", "type", "junk"}} {
		if err := rdb.XAdd(testCtx(t), &redis.XAddArgs{Stream: cfg.Stream, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ids := entries(t, cfg.Addr, cfg.Stream)

	all := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	for i, m := range msgs {
		d := publishertest.Next(t, all)
		if d.Err != nil || d.Event.ID != m.ID.String() || d.MsgID != m.ID.String() || d.Where != ids[i].ID ||
			string(d.Body) != string(m.Body) || d.Event.Subject != m.AggregateID {
			t.Fatalf("delivery %d: %+v, want event %s at %s", i, d, m.ID, ids[i].ID)
		}
		if d.Stored.Before(begin.Add(-time.Second)) || d.Stored.After(time.Now().Add(time.Second)) {
			t.Fatalf("delivery %d stored at %s, want about now", i, d.Stored)
		}
	}
	if d := publishertest.Next(t, all); d.Err == nil || d.Body != nil || d.Where != ids[3].ID {
		t.Fatalf("entry without an event field: %+v, want Err set", d)
	}
	if d := publishertest.Next(t, all); d.Err == nil || string(d.Body) != "not json" {
		t.Fatalf("entry with a foreign event: %+v, want a parse error", d)
	}

	typed := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true, Types: []string{"order.created"}})
	if d := publishertest.Next(t, typed); d.Event.ID != created.ID.String() {
		t.Fatalf("Types filter delivered %s (%s)", d.Event.ID, d.Event.Type)
	}

	fresh := subscribe(t, cfg, broker.SubscribeOptions{})
	later := publishertest.Batch(t, "later", 1, 1)
	publishOK(t, p, later)
	if d := publishertest.Next(t, fresh); d.Event.ID != later[0].ID.String() {
		t.Fatalf("a subscription of new entries delivered %s, want only the later event %s", d.Event.ID, later[0].ID)
	}
	if d := publishertest.Next(t, all); d.Event.ID != later[0].ID.String() {
		t.Fatalf("the FromStart subscription did not go on with the later event: %s", d.Event.ID)
	}
	select {
	case d := <-typed:
		t.Fatalf("Types filter delivered %s (%s)", d.Event.ID, d.Event.Type)
	case d := <-fresh:
		t.Fatalf("extra delivery %s", d.Where)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSubscribeNewOnlyOnEmptyStream: a subscription of new entries on a
// stream that does not exist yet gets the first entry.
func TestSubscribeNewOnlyOnEmptyStream(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	ch := subscribe(t, cfg, broker.SubscribeOptions{})
	p := connect(t, cfg)
	msgs := publishertest.Batch(t, "first", 1, 1)
	publishOK(t, p, msgs)
	if d := publishertest.Next(t, ch); d.Event.ID != msgs[0].ID.String() {
		t.Fatalf("delivered %s, want %s", d.Event.ID, msgs[0].ID)
	}
}

// TestSubscribeSurvivesKill: a subscription whose connection the server
// closes reads on after the last entry it delivered.
func TestSubscribeSurvivesKill(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	p := connect(t, cfg)
	sub := cfg
	sub.ClientName += "-sub"
	ch := subscribe(t, sub, broker.SubscribeOptions{FromStart: true})
	first := publishertest.Batch(t, "k1", 3, 1)
	publishOK(t, p, first)
	for range first {
		publishertest.Next(t, ch)
	}
	if killClients(t, cfg.Addr, sub.ClientName) == 0 {
		t.Fatal("no subscriber connection to kill")
	}
	second := publishertest.Batch(t, "k2", 3, 1)
	publishOK(t, p, second)
	for _, m := range second {
		if d := publishertest.Next(t, ch); d.Event.ID != m.ID.String() {
			t.Fatalf("after the kill: delivered %s, want %s", d.Event.ID, m.ID)
		}
	}
}

// TestSubscribeStop: stop returns promptly, even with XREAD blocked, once
// fn has returned; it is idempotent.
func TestSubscribeStop(t *testing.T) {
	t.Parallel()
	cfg := uniqueConfig(t, localAddr())
	stop, err := redisstream.Subscribe(testCtx(t), cfg, broker.SubscribeOptions{}, func(broker.Delivery) {})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let XREAD block
	begin := time.Now()
	stop()
	stop()
	if elapsed := time.Since(begin); elapsed > time.Second {
		t.Fatalf("stop took %s", elapsed)
	}
}

func TestSubscribeUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stop, err := redisstream.Subscribe(ctx, redisstream.Config{Addr: "127.0.0.1:1", Password: "s3cretpw"},
		broker.SubscribeOptions{}, func(broker.Delivery) {})
	if err == nil {
		stop()
		t.Fatal("Subscribe to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("error %q shows the password", err)
	}
}
