package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// receiverFixture runs a Receiver on 127.0.0.1 that collects deliveries
// and answers what reply says for an event type (nil: 204).
type receiverFixture struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []broker.Delivery
	reply map[string]error
}

func startReceiver(t *testing.T, rc *webhook.Receiver) *receiverFixture {
	t.Helper()
	fx := &receiverFixture{reply: map[string]error{}}
	rc.Deliver = func(_ context.Context, d broker.Delivery) error {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		fx.got = append(fx.got, d)
		return fx.reply[d.Event.Type]
	}
	fx.srv = httptest.NewServer(rc)
	t.Cleanup(fx.srv.Close)
	return fx
}

func (fx *receiverFixture) deliveries() []broker.Delivery {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return append([]broker.Delivery(nil), fx.got...)
}

// TestReceiverRoundTrip: what a Publisher sends, a Receiver verifies and
// hands over as a broker.Delivery; the callback's answer reaches the
// publisher as the matching classification. The publisher signs with the
// new and the old secret, the receiver knows only the old one (a rotation
// in progress).
func TestReceiverRoundTrip(t *testing.T) {
	t.Parallel()
	_, newKey := newSecret(t)
	_, oldKey := newSecret(t)
	v, err := webhook.NewVerifier(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	fx := startReceiver(t, &webhook.Receiver{Verifier: v})
	fx.reply["refused"] = &webhook.StatusError{StatusCode: http.StatusUnprocessableEntity}
	fx.reply["busy"] = &webhook.StatusError{StatusCode: http.StatusTooManyRequests, RetryAfter: 2500 * time.Millisecond}
	fx.reply["broken"] = errors.New("database down")

	p, err := webhook.New(webhook.Config{URL: fx.srv.URL + "/in/orders", Secrets: []webhook.Secret{newKey, oldKey}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	msgs := publishertest.Batch(t, "rt", 4, 1)
	for i, typ := range []string{"order.created", "refused", "busy", "broken"} {
		msgs[i].Type = typ
		msgs[i].Body, _ = outbox.EncodeCloudEvent(&msgs[i].Record, "/test")
	}
	errs := p.Publish(testCtx(t), msgs)
	if errs[0] != nil {
		t.Fatalf("accepted event: %v", errs[0])
	}
	var se *webhook.StatusError
	if !outbox.IsPermanent(errs[1]) || !errors.As(errs[1], &se) || se.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("refused event: %v, want a permanent 422", errs[1])
	}
	if outbox.IsPermanent(errs[2]) || webhook.RetryDelay(errs[2]) != 3*time.Second {
		t.Fatalf("busy endpoint: %v (RetryDelay %s), want a retryable 429 after 3s (rounded up)", errs[2], webhook.RetryDelay(errs[2]))
	}
	if outbox.IsPermanent(errs[3]) || !errors.As(errs[3], &se) || se.StatusCode != http.StatusInternalServerError || !strings.Contains(errs[3].Error(), "database down") {
		t.Fatalf("failing callback: %v, want a retryable 500 saying why", errs[3])
	}
	got := fx.deliveries()
	if len(got) != 4 {
		t.Fatalf("%d deliveries, want 4", len(got))
	}
	for _, d := range got {
		if d.Err != nil || d.MsgID != d.Event.ID || d.Where != "/in/orders" || d.Stored.IsZero() {
			t.Fatalf("delivery: err %v, id %q, event %q, where %q", d.Err, d.MsgID, d.Event.ID, d.Where)
		}
		if d.Event.ID == msgs[0].ID.String() && !bytes.Equal(d.Body, msgs[0].Body) {
			t.Fatalf("body changed:\n got %s\nwant %s", d.Body, msgs[0].Body)
		}
	}
}

// signedRequest builds a delivery by hand, signed with s.
func signedRequest(t *testing.T, url string, s webhook.Secret, id string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Unix()
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", webhook.Sign([]webhook.Secret{s}, id, ts, body))
	return req
}

func status(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestReceiverRefuses: the Receiver's own answers, before the callback.
func TestReceiverRefuses(t *testing.T) {
	t.Parallel()
	_, key := newSecret(t)
	_, other := newSecret(t)
	v, _ := webhook.NewVerifier(key)
	fx := startReceiver(t, &webhook.Receiver{Verifier: v, MaxBodyBytes: 1024})
	good := publishertest.NewMessage(t, publishertest.NewRecord("r", 1))
	id := good.ID.String()

	get, _ := http.NewRequest(http.MethodGet, fx.srv.URL, nil)
	if got := status(t, get); got != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", got)
	}
	if got := status(t, signedRequest(t, fx.srv.URL, other, id, good.Body)); got != http.StatusUnauthorized {
		t.Errorf("another secret: %d, want 401", got)
	}
	unsigned := signedRequest(t, fx.srv.URL, key, id, good.Body)
	unsigned.Header.Del("webhook-signature")
	if got := status(t, unsigned); got != http.StatusUnauthorized {
		t.Errorf("unsigned: %d, want 401", got)
	}
	stale := signedRequest(t, fx.srv.URL, key, id, good.Body)
	ts := time.Now().Add(-10 * time.Minute).Unix()
	stale.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	stale.Header.Set("webhook-signature", webhook.Sign([]webhook.Secret{key}, id, ts, good.Body))
	if got := status(t, stale); got != http.StatusUnauthorized {
		t.Errorf("a replay 10 minutes late: %d, want 401", got)
	}
	big := bytes.Repeat([]byte("x"), 2048)
	if got := status(t, signedRequest(t, fx.srv.URL, key, id, big)); got != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over MaxBodyBytes: %d, want 413", got)
	}
	if n := len(fx.deliveries()); n != 0 {
		t.Fatalf("the callback got %d refused deliveries", n)
	}

	// Verified but no valid event: the callback decides (here: 204).
	if got := status(t, signedRequest(t, fx.srv.URL, key, "evt-1", []byte(`{"not":"an event"}`))); got != http.StatusNoContent {
		t.Errorf("not a CloudEvent: %d, want the callback's 204", got)
	}
	if got := status(t, signedRequest(t, fx.srv.URL, key, "another-id", good.Body)); got != http.StatusNoContent {
		t.Errorf("webhook-id not the event id: %d, want the callback's 204", got)
	}
	got := fx.deliveries()
	if len(got) != 2 || got[0].Err == nil || got[1].Err == nil || got[1].Event.ID != "" {
		t.Fatalf("deliveries %+v, want two with Err set", got)
	}
}
