package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// TestConformanceLocal runs the suite against the machine's NATS server.
func TestConformanceLocal(t *testing.T) {
	publishertest.Run(t, harness(localURL()))
}

// TestConformanceEmbedded runs the suite against an embedded server.
// The embedded server can be restarted by the test, which proves the
// reconnect; the machine's server cannot (Disconnect is nil there).
func TestConformanceEmbedded(t *testing.T) {
	publishertest.Run(t, embeddedHarness())
}

func streamInfo(t *testing.T, url, stream string) *jetstream.StreamInfo {
	t.Helper()
	js, err := jetstream.New(dial(t, url))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	var cfg natsjs.Config
	if got := cfg.Subject("order.created"); got != "outbox.order.created" {
		t.Fatalf("Subject = %q, want outbox.order.created", got)
	}
	if natsjs.DefaultStream != "OUTBOX" || natsjs.DefaultDuplicateWindow != 2*time.Minute {
		t.Fatalf("defaults: stream %q, window %s", natsjs.DefaultStream, natsjs.DefaultDuplicateWindow)
	}
	if got := (natsjs.Config{SubjectPrefix: "x"}).Subject("a.b"); got != "x.a.b" {
		t.Fatalf("prefix without dot: Subject = %q, want x.a.b", got)
	}
}

// TestDefaultStreamOnEmbedded uses the default names (a private server, so
// OUTBOX collides with nothing).
func TestDefaultStreamOnEmbedded(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	p := connect(t, url, natsjs.Config{})
	info := streamInfo(t, url, "OUTBOX")
	c := info.Config
	if len(c.Subjects) != 1 || c.Subjects[0] != "outbox.>" || c.Storage != jetstream.FileStorage ||
		c.Duplicates != 2*time.Minute || c.Replicas != 1 {
		t.Fatalf("stream config: subjects %v, storage %v, duplicates %s, replicas %d; want [outbox.>], file, 2m, 1",
			c.Subjects, c.Storage, c.Duplicates, c.Replicas)
	}
	rec := publishertest.NewRecord("o-1", 1)
	rec.Type = "order.created"
	publishOK(t, p, []outbox.Message{publishertest.NewMessage(t, rec)})
	d := next(t, subscribe(t, url, natsjs.Config{}, natsjs.SubscribeOptions{}))
	if d.Subject != "outbox.order.created" {
		t.Fatalf("subject %q, want outbox.order.created", d.Subject)
	}
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	url := localURL()
	cfg := uniqueConfig(t, url)
	p := connect(t, url, cfg)
	ch := subscribe(t, url, cfg, natsjs.SubscribeOptions{})

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

	d := next(t, ch)
	if want := cfg.SubjectPrefix + "line_item.status_changed"; d.Subject != want {
		t.Fatalf("subject %q, want %q", d.Subject, want)
	}
	for k, want := range map[string]string{
		"Nats-Msg-Id":  rec.ID.String(),
		"Content-Type": "application/cloudevents+json",
		"traceparent":  rec.Headers["traceparent"],
		"tracestate":   rec.Headers["tracestate"],
	} {
		if got := d.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if string(d.Body) != string(msgs[0].Body) {
		t.Fatalf("body %s, want %s", d.Body, msgs[0].Body)
	}
	if d.Err != nil || d.Event.ID != rec.ID.String() || d.Event.Subject != "order-7" || d.Event.Sequence != 3 ||
		d.Event.TraceParent != rec.Headers["traceparent"] || d.StreamSeq != 1 || d.Stored.IsZero() {
		t.Fatalf("delivery: %+v", d)
	}

	d = next(t, ch)
	if d.Header.Get("traceparent") != "" || d.Header.Get("tracestate") != "" {
		t.Fatalf("event without trace context got trace headers: %v", d.Header)
	}
	if d.Header.Get("Nats-Msg-Id") != plain.ID.String() || d.StreamSeq != 2 {
		t.Fatalf("second delivery: seq %d header %v", d.StreamSeq, d.Header)
	}
}

// TestPermanentErrors: only messages that can never be accepted fail
// permanently, and they do not hold back the rest of the batch.
func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	cfg := natsjs.Config{Stream: "PERM", SubjectPrefix: "perm."}
	p := connect(t, url, cfg)

	huge := publishertest.NewMessage(t, publishertest.NewRecord("huge", 1))
	huge.Body = []byte(`{"data":"` + strings.Repeat("x", 2<<20) + `"}`) // over the 1 MiB max payload
	var bad []outbox.Message
	for i, typ := range []string{"order created", "order.*", "order.>", "order..x", ".order", "order.", ""} {
		// Distinct aggregates: one aggregate's events after a failed one
		// would not be sent (outbox.ErrRunBroken).
		m := publishertest.NewMessage(t, publishertest.NewRecord(fmt.Sprintf("bad-%d", i), 1))
		m.Type = typ
		bad = append(bad, m)
	}
	ok1 := publishertest.NewMessage(t, publishertest.NewRecord("ok-1", 1))
	ok2 := publishertest.NewMessage(t, publishertest.NewRecord("ok-2", 1))
	msgs := append([]outbox.Message{ok1, huge}, bad...)
	msgs = append(msgs, ok2)

	errs := p.Publish(testCtx(t), msgs)
	if len(errs) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(errs), len(msgs))
	}
	if errs[0] != nil || errs[len(errs)-1] != nil {
		t.Fatalf("valid messages failed: %v, %v", errs[0], errs[len(errs)-1])
	}
	if !outbox.IsPermanent(errs[1]) || !errors.Is(errs[1], nats.ErrMaxPayload) {
		t.Fatalf("oversized message: %v, want a permanent max-payload error", errs[1])
	}
	for i := 2; i < len(errs)-1; i++ {
		if !outbox.IsPermanent(errs[i]) {
			t.Fatalf("event type %q: %v, want a permanent error", msgs[i].Type, errs[i])
		}
	}
	if info := streamInfo(t, url, "PERM"); info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want the 2 valid ones", info.State.Msgs)
	}

	// The stream's own size limit is permanent too.
	js, err := jetstream.New(dial(t, url))
	if err != nil {
		t.Fatal(err)
	}
	sc := streamInfo(t, url, "PERM").Config
	sc.MaxMsgSize = 4096
	if _, err := js.UpdateStream(testCtx(t), sc); err != nil {
		t.Fatal(err)
	}
	big := publishertest.NewMessage(t, publishertest.NewRecord("big", 1))
	big.Body = []byte(`{"data":"` + strings.Repeat("y", 8192) + `"}`)
	errs = p.Publish(testCtx(t), []outbox.Message{big})
	if !outbox.IsPermanent(errs[0]) || !errors.Is(errs[0], jetstream.ErrStreamMessageExceedsMaximum) {
		t.Fatalf("message over the stream's max size: %v, want permanent", errs[0])
	}
}

// TestStreamUpdated: an existing stream gets our subjects and duplicate
// window while its other settings stay.
func TestStreamUpdated(t *testing.T) {
	t.Parallel()
	url := localURL()
	cfg := uniqueConfig(t, url)
	js, err := jetstream.New(dial(t, url))
	if err != nil {
		t.Fatal(err)
	}
	other := cfg.SubjectPrefix[:len(cfg.SubjectPrefix)-1] + "-other.>"
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{
		Name: cfg.Stream, Subjects: []string{other}, Storage: jetstream.FileStorage,
		MaxAge: time.Hour, Duplicates: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	cfg.DuplicateWindow = 5 * time.Minute
	connect(t, url, cfg)
	c := streamInfo(t, url, cfg.Stream).Config
	if len(c.Subjects) != 2 || c.Subjects[0] != other || c.Subjects[1] != cfg.SubjectPrefix+">" {
		t.Fatalf("subjects %v, want [%s %s>]", c.Subjects, other, cfg.SubjectPrefix)
	}
	if c.Duplicates != 5*time.Minute || c.MaxAge != time.Hour {
		t.Fatalf("duplicates %s (want 5m), max age %s (want 1h kept)", c.Duplicates, c.MaxAge)
	}
}

// TestStreamRecreated: publishing into a deleted stream fails retryably,
// and the next batch recreates it.
func TestStreamRecreated(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	cfg := natsjs.Config{Stream: "GONE", SubjectPrefix: "gone."}
	p := connect(t, url, cfg)
	js, err := jetstream.New(dial(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(testCtx(t), "GONE"); err != nil {
		t.Fatal(err)
	}
	msgs := publishertest.Batch(t, "gone", 3, 1)
	for i, err := range p.Publish(testCtx(t), msgs) {
		if err == nil || outbox.IsPermanent(err) || !strings.Contains(err.Error(), "no stream GONE") {
			t.Fatalf("message %d into a deleted stream: %v, want a retryable no-stream error", i, err)
		}
	}
	publishOK(t, p, msgs)
	if info := streamInfo(t, url, "GONE"); info.State.Msgs != 3 {
		t.Fatalf("recreated stream holds %d messages, want 3", info.State.Msgs)
	}
}

// TestNewKeepsCallerConn: Close leaves a connection passed to New open.
func TestNewKeepsCallerConn(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	nc := dial(t, url)
	p, err := natsjs.New(testCtx(t), nc, natsjs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	publishOK(t, p, publishertest.Batch(t, "own", 2, 1))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsConnected() {
		t.Fatal("Close closed the caller's connection")
	}
	if errs := p.Publish(testCtx(t), publishertest.Batch(t, "own", 1, 2)); !errors.Is(errs[0], natsjs.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", errs[0])
	}
}

// TestConnectOwnsConn: Close closes the connection Connect made.
func TestConnectOwnsConn(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	p := connect(t, url, natsjs.Config{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !p.Conn().IsClosed() {
		t.Fatal("Close left the publisher's own connection open")
	}
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	if p, err := natsjs.Connect(ctx, "nats://127.0.0.1:1", natsjs.Config{}); err == nil {
		_ = p.Close()
		t.Fatal("Connect to a closed port succeeded")
	}
}

func TestSubscribeOptions(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	cfg := natsjs.Config{Stream: "SUBS", SubjectPrefix: "subs."}
	p := connect(t, url, cfg)

	created := publishertest.NewRecord("s-1", 1)
	created.Type = "order.created"
	msgs := []outbox.Message{publishertest.NewMessage(t, created)}
	msgs = append(msgs, publishertest.Batch(t, "s", 2, 2)...) // order.status_changed
	// Two calls: s-1's two events in one call would be a run, stored
	// apart from s-0's event, in no order with it.
	publishOK(t, p, msgs[:1])
	publishOK(t, p, msgs[1:])
	// A foreign message on the stream's subjects is handed over with Err set.
	nc := dial(t, url)
	if err := nc.Publish("subs.junk", []byte("not json")); err != nil {
		t.Fatal(err)
	}

	all := subscribe(t, url, cfg, natsjs.SubscribeOptions{})
	for i := range msgs {
		if d := next(t, all); d.Err != nil || d.Event.ID != msgs[i].ID.String() || d.StreamSeq != uint64(i+1) {
			t.Fatalf("delivery %d: seq %d id %s err %v, want %s", i, d.StreamSeq, d.Event.ID, d.Err, msgs[i].ID)
		}
	}
	if d := next(t, all); d.Err == nil || string(d.Body) != "not json" {
		t.Fatalf("foreign message: err %v body %q, want a parse error", d.Err, d.Body)
	}

	from := subscribe(t, url, cfg, natsjs.SubscribeOptions{StartSeq: 3})
	if d := next(t, from); d.StreamSeq != 3 || d.Event.ID != msgs[2].ID.String() {
		t.Fatalf("StartSeq 3 delivered seq %d", d.StreamSeq)
	}

	typed := subscribe(t, url, cfg, natsjs.SubscribeOptions{Types: []string{"order.created"}})
	if d := next(t, typed); d.Event.ID != created.ID.String() {
		t.Fatalf("Types filter delivered %s (%s)", d.Event.Type, d.Subject)
	}

	fresh := subscribe(t, url, cfg, natsjs.SubscribeOptions{DeliverNew: true})
	later := publishertest.Batch(t, "later", 1, 1)
	publishOK(t, p, later)
	if d := next(t, fresh); d.Event.ID != later[0].ID.String() {
		t.Fatalf("DeliverNew delivered %s, want only the later event %s", d.Event.ID, later[0].ID)
	}
	select {
	case d := <-typed:
		t.Fatalf("Types filter delivered %s", d.Subject)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestBrokerOutage: while the broker is down Publish fails retryably within
// its deadline; after a restart on the same port and store the same
// Publisher succeeds again and nothing stored before is lost.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url, port := srv.ClientURL(), srv.Port()
	p := connect(t, url, natsjs.Config{})

	before := publishertest.Batch(t, "before", 10, 1)
	publishOK(t, p, before)

	srv.Shutdown()
	during := publishertest.Batch(t, "during", 10, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	begin := time.Now()
	errs := p.Publish(ctx, during)
	if elapsed := time.Since(begin); elapsed > 2500*time.Millisecond {
		t.Fatalf("Publish during the outage took %s, past its 2s deadline", elapsed)
	}
	if len(errs) != len(during) {
		t.Fatalf("%d results for %d messages", len(errs), len(during))
	}
	t.Logf("Publish during the outage failed in %s: %v", time.Since(begin), errs[0])
	for i, err := range errs {
		if err == nil || outbox.IsPermanent(err) {
			t.Fatalf("message %d during the outage: %v, want a retryable error", i, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("message %d waited out its deadline (%v); a known outage should fail it at once", i, err)
		}
	}

	srv2, err := embeddednats.Start(embeddednats.Config{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer srv2.Shutdown()
	// Retry as the relay would, until the connection has healed.
	deadline := time.Now().Add(20 * time.Second)
	for {
		errs := p.Publish(testCtx(t), during)
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
			}
		}
		if failed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish still failing 20s after the restart: %v", errs[0])
		}
		time.Sleep(100 * time.Millisecond)
	}

	info := streamInfo(t, url, natsjs.DefaultStream)
	if info.State.Msgs != 20 {
		t.Fatalf("stream holds %d messages after the restart, want 20 (10 before, 10 after)", info.State.Msgs)
	}
	ch := subscribe(t, url, natsjs.Config{}, natsjs.SubscribeOptions{})
	for i, m := range before {
		if d := next(t, ch); d.Event.ID != m.ID.String() {
			t.Fatalf("stream message %d is %s, want %s", i+1, d.Event.ID, m.ID)
		}
	}
	// A retry may have stored part of the batch earlier than the rest.
	want := map[string]bool{}
	for _, m := range during {
		want[m.ID.String()] = true
	}
	for range during {
		d := next(t, ch)
		if !want[d.Event.ID] {
			t.Fatalf("stream message %d is %s, not one of the batch published after the restart", d.StreamSeq, d.Event.ID)
		}
		delete(want, d.Event.ID)
	}
}

func TestConnectErrorHidesPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := natsjs.Connect(ctx, "nats://herald:s3cret@127.0.0.1:1", natsjs.Config{})
	if err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %q should name the server without its password", err)
	}
}

func TestInvalidConfigRefused(t *testing.T) {
	t.Parallel()
	url := startEmbedded(t).ClientURL()
	for _, cfg := range []natsjs.Config{
		{SubjectPrefix: "orders ."},
		{SubjectPrefix: "orders.*."},
		{SubjectPrefix: "orders..x."},
		{Stream: "OR.DERS"},
		{Stream: "OR DERS"},
	} {
		if p, err := natsjs.Connect(testCtx(t), url, cfg); err == nil {
			_ = p.Close()
			t.Fatalf("Connect with %+v succeeded", cfg)
		}
	}
}
