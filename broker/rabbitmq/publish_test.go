package rabbitmq_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/rabbitmq"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// bindQueue declares a queue of the test's (deleted at cleanup with ns)
// bound to the exchange with keys, and returns the channel it used.
func bindQueue(t testing.TB, ns namespace, args amqp.Table, keys ...string) *amqp.Channel {
	t.Helper()
	ch := ns.raw(t)
	if err := ch.ExchangeDeclare(ns.cfg.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(ns.queue, true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		if err := ch.QueueBind(ns.queue, key, ns.cfg.Exchange, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	return ch
}

// consumeQueue reads ns.queue with the plain client.
func consumeQueue(t *testing.T, ch *amqp.Channel, queue string) <-chan amqp.Delivery {
	t.Helper()
	d, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	if rabbitmq.DefaultExchange != "outbox.events" || rabbitmq.DefaultConfirmTimeout != 30*time.Second ||
		rabbitmq.DefaultHeartbeat != 10*time.Second || rabbitmq.ContentType != "application/cloudevents+json" {
		t.Fatal("defaults changed")
	}
	// A vhost of its own, so that the default exchange collides with nothing.
	ns := namespaceIn(t, newVhost(t))
	cfg := ns.cfg
	cfg.Exchange = ""
	p := connect(t, cfg)
	if got := p.Config(); got.Exchange != "outbox.events" || got.ConfirmTimeout != 30*time.Second || got.Unroutable != rabbitmq.UnroutableRetry {
		t.Fatalf("Config() = %+v", got)
	}
	ch := ns.raw(t)
	if err := ch.ExchangeDeclarePassive("outbox.events", amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("the default exchange is no durable topic exchange: %v", err)
	}
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	ch := bindQueue(t, ns, nil, "#")
	deliveries := consumeQueue(t, ch, ns.queue)
	p := connect(t, ns.cfg)

	rec := publishertest.NewRecord("order-7", 3)
	rec.Type = "line_item.status_changed"
	rec.Headers = map[string]string{
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"tracestate":  "congo=t61rcWkgMzE",
	}
	plain := publishertest.NewRecord("order-8", 1)
	plain.Headers = nil
	msgs := []outbox.Message{publishertest.NewMessage(t, rec), publishertest.NewMessage(t, plain)}
	publishOK(t, p, msgs)

	d := publishertest.Next(t, deliveries)
	if d.Exchange != ns.cfg.Exchange || d.RoutingKey != "line_item.status_changed" {
		t.Errorf("published to %s with key %s", d.Exchange, d.RoutingKey)
	}
	if d.MessageId != rec.ID.String() || d.Type != rec.Type || d.ContentType != "application/cloudevents+json" ||
		d.DeliveryMode != amqp.Persistent || !d.Timestamp.Equal(rec.CreatedAt.Truncate(time.Second)) {
		t.Errorf("properties: id %q type %q content type %q mode %d timestamp %s",
			d.MessageId, d.Type, d.ContentType, d.DeliveryMode, d.Timestamp)
	}
	if d.Headers["traceparent"] != rec.Headers["traceparent"] || d.Headers["tracestate"] != rec.Headers["tracestate"] {
		t.Errorf("headers %v", d.Headers)
	}
	if string(d.Body) != string(msgs[0].Body) {
		t.Errorf("body %s, want %s", d.Body, msgs[0].Body)
	}
	if d = publishertest.Next(t, deliveries); d.MessageId != plain.ID.String() || len(d.Headers) != 0 {
		t.Errorf("second message: id %s headers %v", d.MessageId, d.Headers)
	}
}

// TestPermanentErrors: what can never be published fails for good, alone;
// the rest of the batch goes through.
func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.Queue = ns.queue
	cfg.MaxMessageSize = 4096
	p := connect(t, cfg)

	msgs := publishertest.Batch(t, "perm", 5, 1)
	msgs[1].Type = ""
	msgs[2].Type = strings.Repeat("t", 256)
	msgs[3].Body = []byte(`{"data":"` + strings.Repeat("x", 4096) + `"}`)
	errs := p.Publish(testCtx(t), msgs)
	for i, want := range []error{nil, rabbitmq.ErrInvalidRoutingKey, rabbitmq.ErrInvalidRoutingKey, rabbitmq.ErrTooLarge, nil} {
		switch {
		case want == nil && errs[i] != nil:
			t.Errorf("message %d: %v", i, errs[i])
		case want != nil && (!errors.Is(errs[i], want) || !outbox.IsPermanent(errs[i])):
			t.Errorf("message %d: %v, want a permanent %v", i, errs[i], want)
		}
	}
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	for _, m := range []outbox.Message{msgs[0], msgs[4]} {
		if d := publishertest.Next(t, ch); d.MsgID != m.ID.String() {
			t.Fatalf("delivered %s, want %s", d.MsgID, m.ID)
		}
	}
	none(t, ch)
}

// TestUnroutable: a message no queue is bound for fails as Config.Unroutable
// says, alone.
func TestUnroutable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode      rabbitmq.Unroutable
		fails     bool
		permanent bool
	}{
		{rabbitmq.UnroutableRetry, true, false},
		{rabbitmq.UnroutablePermanent, true, true},
		{rabbitmq.UnroutableDrop, false, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t)
			ch := bindQueue(t, ns, nil, "order.*")
			deliveries := consumeQueue(t, ch, ns.queue)
			cfg := ns.cfg
			cfg.Unroutable = tc.mode
			p := connect(t, cfg)

			msgs := publishertest.Batch(t, "route", 3, 1)
			msgs[1].Type = "invoice.paid"
			errs := p.Publish(testCtx(t), msgs)
			if errs[0] != nil || errs[2] != nil {
				t.Fatalf("routable messages: %v, %v", errs[0], errs[2])
			}
			switch err := errs[1]; {
			case !tc.fails && err != nil:
				t.Fatalf("unroutable message: %v, want it acked (and dropped)", err)
			case tc.fails && (!errors.Is(err, rabbitmq.ErrUnroutable) || outbox.IsPermanent(err) != tc.permanent):
				t.Fatalf("unroutable message: %v, want ErrUnroutable, permanent %v", err, tc.permanent)
			}
			for _, m := range []outbox.Message{msgs[0], msgs[2]} {
				if d := publishertest.Next(t, deliveries); d.MessageId != m.ID.String() {
					t.Fatalf("delivered %s, want %s", d.MessageId, m.ID)
				}
			}
		})
	}
}

// TestNackRetryable: a queue full with overflow reject-publish nacks; the
// nack is retryable.
func TestNackRetryable(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	bindQueue(t, ns, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}, "#")
	p := connect(t, ns.cfg)
	msgs := publishertest.Batch(t, "nack", 3, 1)
	errs := p.Publish(testCtx(t), msgs)
	if errs[0] != nil {
		t.Fatalf("first message: %v", errs[0])
	}
	for i := 1; i < 3; i++ {
		if !errors.Is(errs[i], rabbitmq.ErrNacked) || outbox.IsPermanent(errs[i]) {
			t.Fatalf("message %d into a full queue: %v, want a retryable ErrNacked", i, errs[i])
		}
	}
	// The channel stays usable.
	if _, err := ns.raw(t).QueuePurge(ns.queue, false); err != nil {
		t.Fatal(err)
	}
	publishOK(t, p, msgs[1:2])
}

// TestBrokerMaxMessageSize: RabbitMQ closes the channel over a message
// above its max_message_size. That message fails for good, those sent after
// it (dropped unread) go out again within the call, and the limit the
// broker reported applies to later messages before they are sent.
func TestBrokerMaxMessageSize(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.Queue = ns.queue
	p := connect(t, cfg)

	msgs := publishertest.Batch(t, "big", 6, 1)
	big := make([]byte, 128<<20+2) // over RabbitMQ's default limit of 128 MiB
	msgs[2].Body, msgs[4].Body = big, big
	errs := p.Publish(testCtx(t), msgs)
	for _, i := range []int{0, 1, 3, 5} {
		if errs[i] != nil {
			t.Errorf("message %d: %v", i, errs[i])
		}
	}
	for _, i := range []int{2, 4} {
		if !errors.Is(errs[i], rabbitmq.ErrTooLarge) || !outbox.IsPermanent(errs[i]) {
			t.Errorf("message %d over max_message_size: %v, want a permanent ErrTooLarge", i, errs[i])
		}
	}
	if !strings.Contains(errs[2].Error(), "broker's max_message_size of 134217728") {
		t.Errorf("the broker's refusal: %v", errs[2])
	}

	// The next oversized message fails before it is sent.
	begin := time.Now()
	late := publishertest.Batch(t, "late", 1, 1)
	late[0].Body = big[:128<<20+1] // shorter than the refused one, still over the limit
	if err := p.Publish(testCtx(t), late)[0]; !errors.Is(err, rabbitmq.ErrTooLarge) || !outbox.IsPermanent(err) {
		t.Fatalf("later oversized message: %v", err)
	}
	if d := time.Since(begin); d > 50*time.Millisecond {
		t.Errorf("refusing a known-oversized message took %s; it should not be sent", d)
	}
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	got := map[string]int{}
	for range 4 {
		got[publishertest.Next(t, ch).MsgID]++
	}
	none(t, ch)
	for _, i := range []int{0, 1, 3, 5} {
		if got[msgs[i].ID.String()] != 1 {
			t.Errorf("message %d delivered %d times, want once", i, got[msgs[i].ID.String()])
		}
	}
}

// TestPerAggregateOrder: four workers, as the relay runs them, each owning
// some aggregates and publishing their events in sequence, one batch after
// the other; every aggregate's events arrive in order.
func TestPerAggregateOrder(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.Queue = ns.queue
	p := connect(t, cfg)
	const workers, perWorker, seqs = 4, 25, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for seq := int64(1); seq <= seqs; seq++ {
				publishOK(t, p, publishertest.Batch(t, fmt.Sprintf("w%d", w), perWorker, seq))
			}
		})
	}
	wg.Wait()
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	last := map[string]int64{}
	for range workers * perWorker * seqs {
		d := publishertest.Next(t, ch)
		if d.Err != nil {
			t.Fatal(d.Err)
		}
		if want := last[d.Event.Subject] + 1; d.Event.Sequence != want {
			t.Fatalf("aggregate %s: sequence %d arrived, want %d", d.Event.Subject, d.Event.Sequence, want)
		}
		last[d.Event.Subject] = d.Event.Sequence
	}
	if len(last) != workers*perWorker {
		t.Fatalf("%d aggregates arrived, want %d", len(last), workers*perWorker)
	}
}

// TestExchangeDeleted: publishing to an exchange someone deleted fails
// retryably; the next batch declares it again.
func TestExchangeDeleted(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.Queue = ns.queue
	p := connect(t, cfg)
	publishOK(t, p, publishertest.Batch(t, "before", 2, 1))
	if err := ns.raw(t).ExchangeDelete(cfg.Exchange, false, false); err != nil {
		t.Fatal(err)
	}
	msgs := publishertest.Batch(t, "gone", 3, 1)
	for i, err := range p.Publish(testCtx(t), msgs) {
		if err == nil || outbox.IsPermanent(err) || !strings.Contains(err.Error(), "NOT_FOUND") {
			t.Fatalf("message %d to a deleted exchange: %v, want a retryable NOT_FOUND", i, err)
		}
	}
	publishOK(t, p, msgs)
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	for range 5 {
		publishertest.Next(t, ch)
	}
}

// TestClose: Close waits for the batch in flight, which completes; later
// Publish calls fail with ErrClosed; Close twice is fine.
func TestClose(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cfg := ns.cfg
	cfg.Queue = ns.queue
	p, err := rabbitmq.Connect(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := publishertest.Batch(t, "close", 2000, 1)
	started := make(chan struct{})
	results := make(chan []error, 1)
	go func() {
		close(started)
		results <- p.Publish(testCtx(t), msgs)
	}()
	<-started
	time.Sleep(5 * time.Millisecond) // let the batch start, most likely
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	closedAt := time.Now()
	errs := <-results
	acked := 0
	for i, err := range errs {
		switch {
		case err == nil:
			acked++
		case !errors.Is(err, rabbitmq.ErrClosed) || outbox.IsPermanent(err):
			t.Fatalf("message %d: %v; Close must let a started batch finish", i, err)
		}
	}
	if acked != 0 && acked != len(msgs) {
		t.Fatalf("%d of %d messages acked: Close cut the batch", acked, len(msgs))
	}
	t.Logf("batch acked before Close returned: %v (%s)", acked > 0, time.Since(closedAt))
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if errs := p.Publish(testCtx(t), msgs[:1]); !errors.Is(errs[0], rabbitmq.ErrClosed) {
		t.Fatalf("Publish after Close: %v", errs[0])
	}
	if errs := p.Publish(testCtx(t), nil); len(errs) != 0 {
		t.Fatalf("Publish(nil) after Close: %v", errs)
	}
}
