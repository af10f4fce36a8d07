package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/order"
)

// deliveries collects what a webhook receiver accepted.
type deliveries struct {
	mu  sync.Mutex
	got []broker.Delivery
}

func (d *deliveries) add(_ context.Context, del broker.Delivery) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, del)
	return nil
}

func (d *deliveries) types(orderID string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, del := range d.got {
		if del.Err == nil && del.Event.Subject == orderID {
			out = append(out, del.Event.Type)
		}
	}
	return out
}

// herald serve with --broker https?://… delivers an order's events as
// signed webhooks, the secret taken from HERALD_WEBHOOK_SECRET. The
// endpoint is down when Herald starts: Herald starts anyway, /readyz is
// ready, the outage charges no attempt, and the events arrive in order once
// the endpoint is up.
func TestServeDeliversWebhooks(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	text := "whsec_" + base64.StdEncoding.EncodeToString(key)
	secret, err := webhook.ParseSecret(text)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := webhook.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	got := &deliveries{}
	// Reserve a port, close it (the endpoint is down), start it later.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	cfg := testConfig(t, nil)
	cfg.BrokerURL = "http://" + addr + "/hooks/herald?tenant=t1"
	cfg.LookupEnv = func(k string) (string, bool) {
		if k == webhook.EnvSecret {
			return text, true
		}
		return "", false
	}
	cfg.Relay.PollInterval = 20 * time.Millisecond
	cfg.Relay.Retry.Base, cfg.Relay.Retry.Cap = 10*time.Millisecond, 50*time.Millisecond
	cfg.Relay.Retry.MaxAttempts = 3 // an outage of a few probes would exhaust it, were it charged
	ctx := context.Background()
	a, err := app.Start(ctx, cfg, app.Options{HTTP: true})
	if err != nil {
		t.Fatalf("serve with its webhook endpoint down: %v", err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	o, err := a.DB.Orders.CreateOrder(ctx, order.CreateOrder{CustomerID: "c", Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 5}}},
		order.RequestOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB.Orders.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay", Amount: 5, Currency: "EUR"}, order.RequestOptions{Actor: "test"}); err != nil {
		t.Fatal(err)
	}

	// The relay finds the endpoint down ten times over, and charges nothing.
	for deadline := time.Now().Add(time.Minute); a.Relay.Counters().Outages < 10; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("counters %+v: the relay did not take the unreachable endpoint for an outage", a.Relay.Counters())
		}
	}
	// The endpoint comes up.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(&webhook.Receiver{Verifier: verifier, Deliver: got.add})
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	want := []string{"order.created", "order.payment_confirmed", "order.status_changed", "line_item.status_changed"}
	deadline := time.Now().Add(time.Minute)
	for len(got.types(o.ID.String())) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v, want %v", got.types(o.ID.String()), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if types := got.types(o.ID.String()); !equal(types, want) {
		t.Fatalf("delivered %v, want %v in order", types, want)
	}
	if st, err := a.DB.Admin.Stats(ctx); err != nil || st.DeadLetters != 0 {
		t.Fatalf("stats %+v, %v: want no dead letter", st, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz %d", resp.StatusCode)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// serveAndRead runs herald serve on brokerURL, writes an order with a
// payment, and reads its events back through app.SubscribeBroker: every
// event, in sequence, with the orders' CloudEvents fields.
func serveAndRead(t *testing.T, brokerURL string) {
	t.Helper()
	ctx := context.Background()
	cfg := testConfig(t, nil)
	cfg.BrokerURL = brokerURL
	cfg.Relay.PollInterval = 20 * time.Millisecond
	a, err := app.Start(ctx, cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })

	var mu sync.Mutex
	var got []broker.Delivery
	stop, err := app.SubscribeBroker(ctx, cfg, broker.SubscribeOptions{FromStart: true}, func(d broker.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	o, err := a.DB.Orders.CreateOrder(ctx, order.CreateOrder{CustomerID: "c", Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 5}}},
		order.RequestOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.DB.Orders.ConfirmPayment(ctx, o.ID, order.ConfirmPayment{PaymentID: "pay", Amount: 5, Currency: "EUR"}, order.RequestOptions{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"order.created", "order.payment_confirmed", "order.status_changed", "line_item.status_changed"}
	var mine []broker.Delivery
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		mine = mine[:0]
		for _, d := range got {
			if d.Err == nil && d.Event.Subject == o.ID.String() {
				mine = append(mine, d)
			}
		}
		mu.Unlock()
		if len(mine) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read %d of the order's %d events", len(mine), len(want))
		}
	}
	for i, d := range mine[:len(want)] {
		e := d.Event
		if e.Type != want[i] || e.Sequence != int64(i+1) || e.Source != "/herald/orders" || e.AggregateType != "order" ||
			e.SpecVersion != "1.0" || e.DataContentType != "application/json" || e.Time.IsZero() || len(e.Data) == 0 {
			t.Errorf("event %d: %+v, want %s #%d from /herald/orders", i, e, want[i], i+1)
		}
		if d.MsgID != "" && d.MsgID != e.ID {
			t.Errorf("event %d: the broker's message id %q is not the event id %q", i, d.MsgID, e.ID)
		}
	}
}

// The orders' events on Redis Streams, in the stream the URL names.
func TestServeOnRedis(t *testing.T) {
	t.Parallel()
	stream := "herald-test-" + fmt.Sprint(time.Now().UnixNano())
	serveAndRead(t, "redis://127.0.0.1:6379/0?stream="+stream)
	t.Cleanup(func() { // the stream is the test's own
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer func() { _ = rdb.Close() }()
		if err := rdb.Del(context.Background(), stream).Err(); err != nil {
			t.Errorf("delete the stream: %v", err)
		}
	})
}

// The orders' events on Kafka (franz-go's in-process kfake cluster of
// three brokers: no Kafka server runs here), keyed by order in the topic
// orders.events.
func TestServeOnKafka(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	serveAndRead(t, "kafka://"+strings.Join(c.ListenAddrs(), ","))
}

// The orders' events on the machine's RabbitMQ, through an exchange and a
// queue of the test's own (removed at the end).
func TestServeOnRabbitMQ(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("herald-test-%d", time.Now().UnixNano())
	t.Cleanup(func() {
		conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		defer func() { _ = conn.Close() }()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("clean up: %v", err)
			return
		}
		_, _ = ch.QueueDelete(name, false, false, false)
		_ = ch.ExchangeDelete(name, false, false)
	})
	serveAndRead(t, "amqp://guest:guest@127.0.0.1:5672/?exchange="+name+"&queue="+name)
}
