package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// refSignature computes a Standard Webhooks v1 signature from the
// specification's text alone, sharing no code with the package: the
// endpoint checks every delivery with it.
func refSignature(whsec, id, timestamp string, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec, "whsec_"))
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + timestamp + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// newSecret returns a fresh secret in its text form and parsed.
func newSecret(t testing.TB) (string, webhook.Secret) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	text := "whsec_" + base64.StdEncoding.EncodeToString(key)
	s, err := webhook.ParseSecret(text)
	if err != nil {
		t.Fatalf("ParseSecret of a fresh secret: %v", err)
	}
	return text, s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// delivery is one request the endpoint verified.
type delivery struct {
	Event  outbox.CloudEvent
	Body   []byte
	Header http.Header
	Status int // what the endpoint answered
}

// endpoint is an httptest server on 127.0.0.1 that checks every request
// the way an independent receiver would: method, path and query, headers,
// each secret's signature (refSignature), the timestamp, the body. What
// fails a check is answered 401 and reported when the test ends. respond
// chooses the status of a verified delivery (200 when nil); deliveries
// answered 2xx go to the consumer channel, if one was asked for.
type endpoint struct {
	t       testing.TB
	srv     *httptest.Server
	secrets []string // whsec_ texts, in the publisher's order
	path    string   // the URL's path and query, as configured
	query   string
	respond func(w http.ResponseWriter, r *http.Request, ce outbox.CloudEvent) int
	body    string        // the body of answers other than 2xx
	done    chan struct{} // closed at cleanup: hanging handlers return

	mu          sync.Mutex
	problems    []string
	received    []delivery
	out         chan publishertest.Received
	inFlight    map[string]int // per aggregate
	current     int
	maxInFlight int
}

// newEndpoint starts an endpoint expecting deliveries signed with n fresh
// secrets.
func newEndpoint(t testing.TB, n int) (*endpoint, []webhook.Secret) {
	t.Helper()
	ep := &endpoint{t: t, path: "/hooks/outbox", query: "token=t%2F1&x=1&x=2", done: make(chan struct{}), inFlight: map[string]int{}}
	var secrets []webhook.Secret
	for range n {
		text, s := newSecret(t)
		ep.secrets = append(ep.secrets, text)
		secrets = append(secrets, s)
	}
	ep.srv = httptest.NewServer(http.HandlerFunc(ep.serve))
	t.Cleanup(ep.srv.Close)
	t.Cleanup(func() {
		close(ep.done)
		ep.mu.Lock()
		defer ep.mu.Unlock()
		for _, p := range ep.problems {
			t.Errorf("endpoint: %s", p)
		}
	})
	return ep, secrets
}

// URL is the endpoint's address with a path and a query of its own, which
// the publisher must send as they are.
func (ep *endpoint) URL() string { return ep.srv.URL + ep.path + "?" + ep.query }

func (ep *endpoint) problem(format string, args ...any) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.problems = append(ep.problems, fmt.Sprintf(format, args...))
}

func (ep *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away
	}
	if err := ep.check(r, body); err != nil {
		ep.problem("%v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	ce, err := outbox.ParseCloudEvent(body)
	if err != nil {
		ep.problem("body is no CloudEvent: %v: %q", err, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if id := r.Header.Get("webhook-id"); id != ce.ID {
		ep.problem("webhook-id %q, want the event id %q", id, ce.ID)
	}
	if ce.TraceParent != "" && r.Header.Get("traceparent") != ce.TraceParent {
		ep.problem("traceparent header %q, want %q", r.Header.Get("traceparent"), ce.TraceParent)
	}
	if got, want := r.Header.Get("Idempotency-Key"), strconv.Quote(ce.ID); got != want {
		ep.problem("Idempotency-Key %s, want %s", got, want)
	}

	ep.enter(ce.Subject)
	status := http.StatusOK
	if ep.respond != nil {
		status = ep.respond(w, r, ce)
	}
	ep.mu.Lock()
	ep.received = append(ep.received, delivery{Event: ce, Body: body, Header: r.Header.Clone(), Status: status})
	out := ep.out
	ep.mu.Unlock()
	if out != nil && status >= 200 && status < 300 {
		// Before answering: the publisher sends an aggregate's next event
		// only after this answer, so the channel keeps its order.
		select {
		case out <- publishertest.Received{Body: body, MsgID: r.Header.Get("webhook-id")}:
		case <-ep.done:
		}
	}
	ep.leave(ce.Subject)
	w.WriteHeader(status)
	if ep.body != "" && (status < 200 || status > 299) {
		_, _ = io.WriteString(w, ep.body)
	}
}

// check verifies a request as an independent receiver would.
func (ep *endpoint) check(r *http.Request, body []byte) error {
	switch {
	case r.Method != http.MethodPost:
		return fmt.Errorf("method %s, want POST", r.Method)
	case r.URL.Path != ep.path || r.URL.RawQuery != ep.query:
		return fmt.Errorf("request URI %s, want %s?%s", r.RequestURI, ep.path, ep.query)
	case r.Header.Get("Content-Type") != "application/cloudevents+json":
		return fmt.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
	case r.ContentLength != int64(len(body)):
		return fmt.Errorf("Content-Length %d for %d bytes", r.ContentLength, len(body))
	}
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if id == "" || ts == "" || sig == "" {
		return fmt.Errorf("missing Standard Webhooks headers: id %q, timestamp %q, signature %q", id, ts, sig)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %w", ts, err)
	}
	if d := time.Since(time.Unix(sec, 0)); d > time.Minute || d < -time.Minute {
		return fmt.Errorf("webhook-timestamp %s is %s off", ts, d)
	}
	sigs := strings.Split(sig, " ")
	if len(sigs) != len(ep.secrets) {
		return fmt.Errorf("%d signatures %q, want one per secret (%d)", len(sigs), sig, len(ep.secrets))
	}
	for i, s := range ep.secrets {
		want, err := refSignature(s, id, ts, body)
		if err != nil {
			return err
		}
		if sigs[i] != want {
			return fmt.Errorf("signature %d is %q, want %q", i+1, sigs[i], want)
		}
	}
	return nil
}

// enter and leave track requests in flight, overall and per aggregate.
func (ep *endpoint) enter(aggregate string) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.inFlight[aggregate]++
	if ep.inFlight[aggregate] > 1 {
		ep.problems = append(ep.problems, fmt.Sprintf("two events of aggregate %s in flight at once", aggregate))
	}
	ep.current++
	ep.maxInFlight = max(ep.maxInFlight, ep.current)
}

func (ep *endpoint) leave(aggregate string) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.inFlight[aggregate]--
	ep.current--
}

// consume starts delivering what the endpoint acknowledges to a channel.
func (ep *endpoint) consume(*testing.T) <-chan publishertest.Received {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.out = make(chan publishertest.Received, 1<<14)
	return ep.out
}

func (ep *endpoint) deliveries() []delivery {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return append([]delivery(nil), ep.received...)
}

func (ep *endpoint) maxConcurrent() int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.maxInFlight
}

// newPublisher returns a publisher to ep's URL, closed at cleanup.
func newPublisher(t testing.TB, ep *endpoint, secrets []webhook.Secret, cfg webhook.Config) *webhook.Publisher {
	t.Helper()
	cfg.URL, cfg.Secrets = ep.URL(), secrets
	p, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// hang blocks until the request is abandoned or the test ends.
func (ep *endpoint) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-ep.done:
	}
}

// webhookConfig is the tests' configuration, before the URL and secrets.
func webhookConfig() webhook.Config {
	return webhook.Config{Timeout: 10 * time.Second, Concurrency: 8}
}
