package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/order"
)

// TestServeSQLiteEmbedded runs herald serve on its embedded defaults: a
// SQLite file and the embedded NATS server, in a data directory of its own.
func TestServeSQLiteEmbedded(t *testing.T) {
	t.Parallel()
	httpAddr := "127.0.0.1:" + freePort(t)
	natsAddr := "127.0.0.1:" + freePort(t)
	p := startHerald(t, "serve",
		"--data-dir", t.TempDir(),
		"--http-addr", httpAddr,
		"--embedded-nats-addr", natsAddr,
	)
	base := "http://" + httpAddr
	client := newClient(t)
	p.waitReady(t, client, base)
	p.waitLog(t, "herald listening on "+base)
	p.waitLog(t, "loopback only")

	lifecycle(t, client, base, natsReader("nats://"+natsAddr), ordersvc.EventSource)

	// The lifecycle's 18 events were all relayed by this process.
	metrics := getText(t, client, base+"/metrics")
	for _, want := range []string{"herald_relay_published_total 18\n", "herald_outbox_pending 0\n", "herald_outbox_dlq_size 0\n", "herald_http_requests_total{"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	p.terminate(t)
}

func getText(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestServePostgres runs herald serve on a PostgreSQL schema of its own and
// each broker (see e2eBrokers), with a second relay process (herald relay)
// on the same database, as in production.
func TestServePostgres(t *testing.T) {
	t.Parallel()
	for _, b := range e2eBrokers {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			servePostgres(t, b.setUp(t))
		})
	}
}

// servePostgres runs herald serve and herald relay on PostgreSQL and the
// broker of target, and drives the lifecycle, read back by target's reader.
func servePostgres(t *testing.T, target brokerTarget) {
	dbURL, _ := testdb.PostgresSchema(t)
	brokerURL := target.url
	const source = "/e2e/orders"
	httpAddr := "127.0.0.1:" + freePort(t)
	p := startHeraldEnv(t, target.env, "serve",
		"--db", dbURL,
		"--broker", brokerURL,
		"--data-dir", t.TempDir(),
		"--http-addr", httpAddr,
		"--source", source,
		"--workers", "2",
	)
	base := "http://" + httpAddr
	client := newClient(t)
	p.waitReady(t, client, base)
	// The schema is migrated now: a second relay joins without migrating,
	// configured through its environment.
	relay := startHeraldEnv(t, append([]string{
		"HERALD_DATABASE_URL=" + dbURL,
		"HERALD_BROKER_URL=" + brokerURL,
		"HERALD_DATA_DIR=" + t.TempDir(),
	}, target.env...), "relay", "--no-migrate", "--source", source, "--workers", "2", "--poll-interval", "50ms")
	relay.waitLog(t, "herald relay running")

	lifecycle(t, client, base, target.reader, source)
	relay.terminate(t)
	p.terminate(t)
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// api calls the HTTP API and decodes the JSON answer into out.
// traceParent goes with every request; every event must carry it on.
const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func api(t *testing.T, client *http.Client, method, url string, body any, wantStatus int, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("traceparent", traceParent)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, data)
		}
	}
}

// collector gathers one order's events from a broker.
type collector struct {
	mu     sync.Mutex
	order  string
	events []broker.Delivery
}

func (c *collector) add(d broker.Delivery) {
	if d.Err != nil || d.Event.Subject != c.order {
		return // another order's event, or another test's message
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, d)
}

func (c *collector) snapshot() []broker.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// step is one request of the lifecycle and the events it must emit.
type step struct {
	name   string
	do     func() order.Order
	status order.Status // of the order after the step
	emits  []string     // event types, in order
}

// lifecycle creates an order with a physical, a digital and a service item,
// confirms its payment, walks every item to a terminal state so the order
// completes, and checks the audit trail and the CloudEvents read back from
// the broker by rd.
func lifecycle(t *testing.T, client *http.Client, base string, rd eventReader, source string) {
	t.Helper()
	started := time.Now().Add(-time.Second)

	// Subscribe for new events before the order exists; the stream may be
	// shared (the machine's NATS), so only this order's events are kept.
	col := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	ready := make(chan struct{})
	stop, err := rd.subscribe(ctx, func(d broker.Delivery) {
		<-ready // col.order is set
		col.add(d)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer once.Do(func() { close(ready) })

	var o order.Order
	api(t, client, http.MethodPost, base+"/api/v1/orders", order.CreateOrder{
		CustomerID: "c-e2e",
		Currency:   "EUR",
		LineItems: []order.CreateLineItem{
			{ProductID: "book", ProductType: order.ProductPhysical, Quantity: 2, UnitPrice: 1999},
			{ProductID: "ebook", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 500},
			{ProductID: "lesson", ProductType: order.ProductService, Quantity: 1, UnitPrice: 10000},
		},
	}, http.StatusCreated, &o)
	col.order = o.ID.String()
	once.Do(func() { close(ready) })
	if o.Status != order.StatusPending || o.TotalAmount != 2*1999+500+10000 || len(o.LineItems) != 3 || o.Version != 1 {
		t.Fatalf("created order: %+v", o)
	}
	item := map[order.ProductType]uuid.UUID{}
	for _, li := range o.LineItems {
		item[li.ProductType] = li.ID
	}
	orderURL := base + "/api/v1/orders/" + o.ID.String()

	post := func(url string, body any) func() order.Order {
		return func() order.Order {
			var got order.Order
			api(t, client, http.MethodPost, url, body, http.StatusOK, &got)
			return got
		}
	}
	move := func(pt order.ProductType, to order.Status) func() order.Order {
		return post(orderURL+"/line-items/"+item[pt].String()+"/transitions", order.TransitionRequest{To: to})
	}
	const li, osc = order.EventLineItemStatusChanged, order.EventOrderStatusChanged
	steps := []step{
		{"confirm payment", post(orderURL+"/payment-confirmation", order.ConfirmPayment{PaymentID: "pay_e2e", Amount: o.TotalAmount, Currency: "EUR"}),
			order.StatusPaymentConfirmed, []string{order.EventPaymentConfirmed, osc, li, li, li}},
		{"physical preparing", move(order.ProductPhysical, order.StatusPreparing), order.StatusProcessing, []string{li, osc}},
		{"physical ready_to_ship", move(order.ProductPhysical, order.StatusReadyToShip), order.StatusProcessing, []string{li}},
		{"physical shipped", move(order.ProductPhysical, order.StatusShipped), order.StatusProcessing, []string{li}},
		{"physical delivered", move(order.ProductPhysical, order.StatusDelivered), order.StatusProcessing, []string{li}},
		{"digital access_granted", move(order.ProductDigital, order.StatusAccessGranted), order.StatusProcessing, []string{li}},
		{"digital downloaded", move(order.ProductDigital, order.StatusDownloaded), order.StatusProcessing, []string{li}},
		{"service booking_confirmed", move(order.ProductService, order.StatusBookingConfirmed), order.StatusProcessing, []string{li}},
		{"service reminder_sent", move(order.ProductService, order.StatusReminderSent), order.StatusProcessing, []string{li}},
		{"service in_progress", move(order.ProductService, order.StatusInProgress), order.StatusProcessing, []string{li}},
		{"service completed", move(order.ProductService, order.StatusCompleted), order.StatusCompleted, []string{li, osc}},
	}
	wantTypes := []string{order.EventOrderCreated}
	for _, s := range steps {
		got := s.do()
		if got.Status != s.status {
			t.Fatalf("after %s the order is %s, want %s", s.name, got.Status, s.status)
		}
		wantTypes = append(wantTypes, s.emits...)
	}
	var final order.Order
	api(t, client, http.MethodGet, orderURL, nil, http.StatusOK, &final)
	if final.Status != order.StatusCompleted {
		t.Fatalf("final order: %+v", final)
	}
	for _, li := range final.LineItems {
		if !order.LineItemMachine(li.ProductType).Terminal(li.Status) {
			t.Errorf("line item %s is %s, not terminal", li.ProductType, li.Status)
		}
	}

	// The audit trail: one row per status change, oldest first.
	var trail struct {
		Transitions []order.Transition `json:"transitions"`
	}
	api(t, client, http.MethodGet, orderURL+"/transitions", nil, http.StatusOK, &trail)
	if n := len(trail.Transitions); n != len(wantTypes)-1 { // order.payment_confirmed has no row of its own
		t.Errorf("audit trail has %d rows, want %d", n, len(wantTypes)-1)
	}
	if len(trail.Transitions) > 0 {
		first, last := trail.Transitions[0], trail.Transitions[len(trail.Transitions)-1]
		if first.To != order.StatusPending || last.To != order.StatusCompleted || !last.Automatic || last.LineItemID != nil {
			t.Errorf("audit trail runs from %+v to %+v", first, last)
		}
	}

	// The events, as a consumer sees them.
	deadline := time.Now().Add(startLimit)
	for len(col.snapshot()) < len(wantTypes) {
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d events within %s", len(col.snapshot()), len(wantTypes), startLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // any extra (duplicate) event would show up now
	events := col.snapshot()
	if len(events) != len(wantTypes) {
		t.Errorf("got %d events, want %d", len(events), len(wantTypes))
	}
	var gotTypes []string
	eventIDs := map[string]bool{}
	for i, d := range events {
		e := d.Event
		gotTypes = append(gotTypes, e.Type)
		eventIDs[e.ID] = true
		checkCloudEvent(t, i, d, rd, source, o.ID, started)
	}
	t.Logf("%d events of order %s read from %s", len(events), o.ID, rd.name)
	if !slices.Equal(gotTypes, wantTypes) {
		t.Errorf("event types\n got %v\nwant %v", gotTypes, wantTypes)
	}
	for _, tr := range trail.Transitions {
		if !eventIDs[tr.EventID.String()] {
			t.Errorf("audit row %d (%s → %s) names event %s, which was not published", tr.ID, tr.From, tr.To, tr.EventID)
		}
	}
	checkData(t, events, o)
}

// checkCloudEvent checks the envelope of the i-th event of the order.
func checkCloudEvent(t *testing.T, i int, d broker.Delivery, rd eventReader, source string, orderID uuid.UUID, started time.Time) {
	t.Helper()
	e := d.Event
	var raw map[string]any
	if err := json.Unmarshal(d.Body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "aggregatetype", "sequence"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("event %d has no %q: %s", i, k, d.Body)
		}
	}
	id, err := uuid.Parse(e.ID)
	switch {
	case e.SpecVersion != "1.0":
		t.Errorf("event %d: specversion %q", i, e.SpecVersion)
	case err != nil || id.Version() != 7:
		t.Errorf("event %d: id %q is not a UUIDv7 (%v)", i, e.ID, err)
	case d.MsgID != e.ID:
		t.Errorf("event %d: the broker's message id %q, id %q", i, d.MsgID, e.ID)
	case e.Source != source:
		t.Errorf("event %d: source %q, want %q", i, e.Source, source)
	case !rd.where(d):
		t.Errorf("event %d: %s put it at %q (type %q)", i, rd.name, d.Where, e.Type)
	case e.Subject != orderID.String():
		t.Errorf("event %d: subject %q, want the order id %s", i, e.Subject, orderID)
	case e.Time.Before(started) || e.Time.After(time.Now().Add(time.Second)):
		t.Errorf("event %d: time %s is outside the test", i, e.Time)
	case e.DataContentType != "application/json":
		t.Errorf("event %d: datacontenttype %q", i, e.DataContentType)
	case e.AggregateType != order.AggregateType:
		t.Errorf("event %d: aggregatetype %q", i, e.AggregateType)
	case e.Sequence != int64(i+1):
		t.Errorf("event %d: sequence %d, want %d (in order, without gaps)", i, e.Sequence, i+1)
	case e.TraceParent != traceParent:
		t.Errorf("event %d: traceparent %q, want the request's %q", i, e.TraceParent, traceParent)
	}
}

// checkData checks that each event's data carries what a consumer needs.
func checkData(t *testing.T, events []broker.Delivery, o order.Order) {
	t.Helper()
	for i, d := range events {
		var data map[string]any
		if err := json.Unmarshal(d.Event.Data, &data); err != nil {
			t.Fatalf("event %d data: %v", i, err)
		}
		want := map[string]any{"order_id": o.ID.String(), "customer_id": "c-e2e"}
		switch d.Event.Type {
		case order.EventOrderCreated:
			want["currency"], want["total_amount"], want["status"] = "EUR", float64(o.TotalAmount), "pending"
			if items, _ := data["line_items"].([]any); len(items) != 3 {
				t.Errorf("order.created has line items %v", data["line_items"])
			}
		case order.EventPaymentConfirmed:
			want["payment_id"], want["amount"], want["currency"] = "pay_e2e", float64(o.TotalAmount), "EUR"
		case order.EventOrderStatusChanged:
			want["currency"] = "EUR"
			for _, k := range []string{"from", "to", "actor"} {
				if data[k] == nil || data[k] == "" {
					t.Errorf("event %d (%s) has no %s: %v", i, d.Event.Type, k, data)
				}
			}
		case order.EventLineItemStatusChanged:
			for _, k := range []string{"line_item_id", "product_id", "product_type", "from", "to", "actor"} {
				if data[k] == nil || data[k] == "" {
					t.Errorf("event %d (%s) has no %s: %v", i, d.Event.Type, k, data)
				}
			}
		}
		for k, v := range want {
			if data[k] != v {
				t.Errorf("event %d (%s): %s = %v, want %v", i, d.Event.Type, k, data[k], v)
			}
		}
	}
	// The last event completes the order.
	last := events[len(events)-1].Event
	if !strings.Contains(string(last.Data), `"to":"completed"`) || last.Type != order.EventOrderStatusChanged {
		t.Errorf("last event: %s %s", last.Type, last.Data)
	}
}

// TestBinaryBasics checks what a user sees first: help, version, and a
// clear refusal of a bad setting.
func TestBinaryBasics(t *testing.T) {
	t.Parallel()
	run := func(env []string, args ...string) (int, string) {
		t.Helper()
		p := startHeraldEnv(t, env, args...)
		select {
		case <-p.done:
		case <-time.After(stopLimit):
			t.Fatalf("herald %v did not exit", args)
		}
		return p.cmd.ProcessState.ExitCode(), p.stderr.String()
	}
	if code, out := run(nil, "--help"); code != 0 || !strings.Contains(out, "HERALD_BATCH_SIZE") {
		t.Errorf("herald --help: exit %d:\n%s", code, out)
	}
	if code, out := run(nil, "version"); code != 0 || !strings.HasPrefix(out, "herald ") || !strings.Contains(out, "commit ") {
		t.Errorf("herald version: exit %d:\n%s", code, out)
	}
	dataDir := t.TempDir() + "/data"
	code, out := run([]string{"HERALD_BROKER_URL=mqtt://127.0.0.1:1883", "HERALD_DATA_DIR=" + dataDir}, "serve")
	if code != 2 || !strings.Contains(out, `unknown broker scheme "mqtt"`) {
		t.Errorf("herald serve with an MQTT broker: exit %d:\n%s", code, out)
	}
}
