package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/cli"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// startNATS starts an embedded NATS server and publishes msgs to it.
func startNATS(t *testing.T, msgs ...outbox.Message) (addr string, publish func(...outbox.Message)) {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := natsjs.Connect(ctx, srv.ClientURL(), app.NATSConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	publish = func(msgs ...outbox.Message) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i, err := range pub.Publish(ctx, msgs) {
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	if len(msgs) > 0 {
		publish(msgs...)
	}
	return fmt.Sprintf("127.0.0.1:%d", srv.Port()), publish
}

// event returns a message of the given type for aggregate "o-1".
func event(t *testing.T, typ string, seq int64, data string) outbox.Message {
	t.Helper()
	r := publishertest.NewRecord("o-1", seq)
	r.Type = typ
	r.Payload = json.RawMessage(data)
	return publishertest.NewMessage(t, r)
}

// tail runs herald tail with args until stop is called, and returns its
// output so far and a stop function that returns the exit status.
func tail(t *testing.T, args ...string) (out *syncBuffer, stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	var stderr syncBuffer
	// The subscription is in place once tail says so.
	defer waitFor(t, "herald tail to subscribe", func() bool { return strings.Contains(stderr.String(), "tailing stream") })
	done := make(chan int, 1)
	go func() { done <- cli.Main(ctx, append([]string{"tail"}, args...), out, &stderr, nil) }()
	stopped := false
	var code int
	stop = func() (int, string) {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("herald tail did not stop")
			}
		}
		return code, stderr.String()
	}
	t.Cleanup(func() { stop() })
	return out, stop
}

func TestTail(t *testing.T) {
	t.Parallel()
	created := event(t, "order.created", 1,
		`{"order_id":"o-1","customer_id":"c-42","currency":"EUR","total_amount":3998,"line_items":[{"product_type":"physical"},{"product_type":"digital"}]}`)
	addr, publish := startNATS(t, created)

	out, stop := tail(t, "--embedded-nats-addr", addr, "--from-start")
	waitFor(t, "the first event", func() bool { return strings.Contains(out.String(), "order.created") })
	publish(
		event(t, "order.payment_confirmed", 2, `{"payment_id":"pay_1","amount":3998,"currency":"EUR"}`),
		event(t, "order.status_changed", 3, `{"from":"pending","to":"payment_confirmed","reason":"paid","automatic":false}`),
		event(t, "line_item.status_changed", 4,
			`{"line_item_id":"01a21d31-f30d-7f15-a568-c8096c004dd2","product_type":"physical","product_id":"p-1","from":"payment_confirmed","to":"preparing"}`),
		event(t, "custom.thing", 5, `{"b":2,"a":"x","nested":{"c":1}}`),
	)
	waitFor(t, "five events", func() bool { return strings.Count(out.String(), "\n") == 5 })
	code, stderr := stop()
	if code != cli.ExitOK {
		t.Fatalf("herald tail exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"order.created", "o-1", "#1", "customer=c-42 total=3998 EUR items=2 (physical, digital)"},
		{"order.payment_confirmed", "#2", "payment=pay_1 amount=3998 EUR"},
		{"order.status_changed", "#3", `order pending → payment_confirmed reason="paid"`},
		{"line_item.status_changed", "#4", "item=…c8096c004dd2 physical p-1: payment_confirmed → preparing"},
		{"custom.thing", "#5", "a=x b=2"},
	}
	for i, l := range lines {
		if _, err := time.Parse(time.RFC3339, strings.Fields(l)[0]); err != nil {
			t.Errorf("line %d does not start with a time: %s", i, l)
		}
		for _, w := range want[i] {
			if !strings.Contains(l, w) {
				t.Errorf("line %d lacks %q: %s", i, w, l)
			}
		}
	}
}

func TestTailJSON(t *testing.T) {
	t.Parallel()
	addr, publish := startNATS(t, event(t, "order.created", 1, `{"order_id":"o-1"}`))

	// Without --from-start only new events are printed.
	out, stop := tail(t, "--embedded-nats-addr", addr, "--json", "--event-type", "order.status_changed")
	publish(
		event(t, "order.payment_confirmed", 2, `{"payment_id":"pay_1"}`),
		event(t, "order.status_changed", 3, "{\n  \"to\": \"payment_confirmed\"\n}"),
	)
	waitFor(t, "the event", func() bool { return strings.Contains(out.String(), "\n") })
	time.Sleep(100 * time.Millisecond)
	if code, stderr := stop(); code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want only the new order.status_changed event, got:\n%s", out.String())
	}
	ce, err := outbox.ParseCloudEvent([]byte(lines[0]))
	if err != nil {
		t.Fatal(err)
	}
	if ce.Type != "order.status_changed" || ce.Sequence != 3 || ce.Subject != "o-1" || string(ce.Data) != `{"to":"payment_confirmed"}` {
		t.Errorf("event %+v", ce)
	}
}

func TestTailWithoutServer(t *testing.T) {
	t.Parallel()
	r := run(t, nil, "tail", "--embedded-nats-addr", "127.0.0.1:1")
	if r.code != cli.ExitFailure || !strings.Contains(r.stderr, "cannot reach the embedded NATS server at 127.0.0.1:1") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}
