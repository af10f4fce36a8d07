package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// publishOne publishes one fresh event and returns its result.
func publishOne(t *testing.T, p outbox.Publisher) error {
	t.Helper()
	errs := p.Publish(testCtx(t), publishertest.Batch(t, "one", 1, 1))
	if len(errs) != 1 {
		t.Fatalf("%d results for 1 message", len(errs))
	}
	return errs[0]
}

// TestStatusClassification: 2xx acknowledges; 3xx and 4xx but 408 and 429
// are permanent; 408, 429 and 5xx are retryable, with the Retry-After.
func TestStatusClassification(t *testing.T) {
	t.Parallel()
	retryAt := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		status     int
		header     map[string]string
		body       string
		permanent  bool
		retryAfter time.Duration // at least
	}{
		{status: 200},
		{status: 202},
		{status: 204},
		{status: 301, header: map[string]string{"Location": "https://elsewhere.example.com/new/TOKEN?k=SECRET"}, permanent: true},
		{status: 307, header: map[string]string{"Location": "/other"}, permanent: true},
		{status: 400, body: "invalid event\n\tline two", permanent: true},
		{status: 401, permanent: true},
		{status: 404, permanent: true},
		{status: 410, permanent: true},
		{status: 413, permanent: true},
		{status: 408},
		{status: 429, header: map[string]string{"Retry-After": "7"}, retryAfter: 7 * time.Second},
		{status: 500, body: strings.Repeat("x", 5000)},
		{status: 502},
		{status: 503, header: map[string]string{"Retry-After": retryAt}, retryAfter: 80 * time.Second},
		{status: 503, header: map[string]string{"Retry-After": "soon"}},
		{status: 504},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			t.Parallel()
			ep, secrets := newEndpoint(t, 1)
			ep.body = tc.body
			ep.respond = func(w http.ResponseWriter, _ *http.Request, _ outbox.CloudEvent) int {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				return tc.status
			}
			// A redirect followed would reach the endpoint on another path
			// (or host), which it reports as a problem.
			p := newPublisher(t, ep, secrets, webhookConfig())
			err := publishOne(t, p)
			if n := len(ep.deliveries()); n != 1 {
				t.Fatalf("the endpoint saw %d deliveries, want 1", n)
			}
			if tc.status < 300 {
				if err != nil {
					t.Fatalf("status %d: %v, want nil", tc.status, err)
				}
				return
			}
			var se *webhook.StatusError
			switch {
			case !errors.As(err, &se) || se.StatusCode != tc.status:
				t.Fatalf("status %d: %v, want a *StatusError with that code", tc.status, err)
			case outbox.IsPermanent(err) != tc.permanent:
				t.Fatalf("status %d: permanent=%v, want %v: %v", tc.status, outbox.IsPermanent(err), tc.permanent, err)
			case se.Transient() == tc.permanent:
				t.Fatalf("status %d: Transient()=%v", tc.status, se.Transient())
			case webhook.RetryDelay(err) < tc.retryAfter-dateSlack(tc.header) || webhook.RetryDelay(err) > tc.retryAfter+15*time.Second:
				t.Fatalf("status %d: RetryDelay %s, want %s", tc.status, webhook.RetryDelay(err), tc.retryAfter)
			case strings.Contains(err.Error(), "TOKEN") || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "token="):
				t.Fatalf("the error %q shows the endpoint's or the redirect's token", err)
			case !strings.Contains(err.Error(), fmt.Sprint(tc.status)):
				t.Fatalf("the error %q does not name the status", err)
			}
			if tc.body != "" && !strings.Contains(err.Error(), strings.Join(strings.Fields(tc.body), " ")[:13]) {
				t.Fatalf("the error %q does not quote the answer's body", err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("the error is %d bytes long: the body is not cut short", len(err.Error()))
			}
			var ra interface{ RetryDelay() time.Duration }
			if !errors.As(err, &ra) || ra.RetryDelay() != se.RetryAfter {
				t.Fatalf("the relay's interface does not find the Retry-After in %v", err)
			}
		})
	}
}

// TestTimeout: an endpoint that never answers fails the delivery after
// Config.Timeout with ErrTimeout, retryable, and not as ctx's end.
func TestTimeout(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	ep.respond = func(_ http.ResponseWriter, r *http.Request, _ outbox.CloudEvent) int {
		ep.hang(r)
		return http.StatusOK
	}
	cfg := webhookConfig()
	cfg.Timeout = 200 * time.Millisecond
	p := newPublisher(t, ep, secrets, cfg)
	start := time.Now()
	errs := p.Publish(testCtx(t), publishertest.Batch(t, "hang", 3, 1))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Publish took %s with a 200ms timeout", d)
	}
	for i, err := range errs {
		if !errors.Is(err, webhook.ErrTimeout) || outbox.IsPermanent(err) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("message %d: %v, want a retryable ErrTimeout", i, err)
		}
	}
}

// TestContextEnds: when Publish's context ends first, the deliveries
// without an answer fail with errors wrapping ctx.Err().
func TestContextEnds(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	ep.respond = func(_ http.ResponseWriter, r *http.Request, ce outbox.CloudEvent) int {
		if strings.HasPrefix(ce.Subject, "slow") {
			ep.hang(r)
		}
		return http.StatusOK
	}
	p := newPublisher(t, ep, secrets, webhookConfig())
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	msgs := append(publishertest.Batch(t, "fast", 2, 1), publishertest.Batch(t, "slow", 2, 1)...)
	errs := p.Publish(ctx, msgs)
	for i, err := range errs {
		switch {
		case i < 2 && err != nil:
			t.Errorf("message %d (answered at once): %v", i, err)
		case i >= 2 && (!errors.Is(err, context.DeadlineExceeded) || outbox.IsPermanent(err) || errors.Is(err, webhook.ErrTimeout)):
			t.Errorf("message %d: %v, want an error wrapping context.DeadlineExceeded", i, err)
		}
	}
}

// closedURL is a URL on 127.0.0.1 where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/hook?token=SECRET"
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	_, s := newSecret(t)
	p, err := webhook.New(webhook.Config{URL: closedURL(t), Secrets: []webhook.Secret{s}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	errs := p.Publish(testCtx(t), publishertest.Batch(t, "down", 4, 1))
	for i, err := range errs {
		if !errors.Is(err, webhook.ErrUnreachable) || outbox.IsPermanent(err) {
			t.Fatalf("message %d: %v, want a retryable ErrUnreachable", i, err)
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "/hook") {
			t.Fatalf("the error %q shows the endpoint's path or query", err)
		}
	}
}

// TestEndpointDownThenUp: while the endpoint is down, deliveries fail fast
// and retryably; once it is back on the same address, the same publisher
// delivers again.
func TestEndpointDownThenUp(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	p := newPublisher(t, ep, secrets, webhookConfig())
	if err := publishOne(t, p); err != nil {
		t.Fatalf("before the outage: %v", err)
	}
	addr := ep.srv.Listener.Addr().String()
	ep.srv.Close() // drops the kept-alive connections too

	start := time.Now()
	for i, err := range p.Publish(testCtx(t), publishertest.Batch(t, "outage", 3, 1)) {
		if err == nil || outbox.IsPermanent(err) || !errors.Is(err, webhook.ErrUnreachable) {
			t.Fatalf("during the outage, message %d: %v, want a retryable ErrUnreachable", i, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failing took %s, want fast", d)
	}

	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(ep.serve))
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	if err := publishOne(t, p); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if n := len(ep.deliveries()); n != 2 {
		t.Fatalf("the endpoint verified %d deliveries, want 2", n)
	}
}

// TestEndpointClosesConnections: the endpoint drops every kept-alive
// connection between batches (a restart behind a load balancer, an idle
// timeout); the next batch goes through on new connections.
func TestEndpointClosesConnections(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	p := newPublisher(t, ep, secrets, webhookConfig())
	for round := range 5 {
		for i, err := range p.Publish(testCtx(t), publishertest.Batch(t, fmt.Sprintf("r%d", round), 20, 1)) {
			if err != nil {
				t.Fatalf("round %d, message %d: %v", round, i, err)
			}
		}
		ep.srv.CloseClientConnections()
	}
	if n := len(ep.deliveries()); n != 100 {
		t.Fatalf("the endpoint verified %d deliveries, want 100", n)
	}
}

// TestBatchMixedOutcomes: each message gets its own result within one
// batch.
func TestBatchMixedOutcomes(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	outcome := map[string]int{"m-1": 400, "m-4": 503, "m-6": 410, "m-7": 429}
	ep.respond = func(_ http.ResponseWriter, _ *http.Request, ce outbox.CloudEvent) int {
		if s, ok := outcome[ce.Subject]; ok {
			return s
		}
		return http.StatusNoContent
	}
	p := newPublisher(t, ep, secrets, webhookConfig())
	msgs := publishertest.Batch(t, "m", 10, 1)
	errs := p.Publish(testCtx(t), msgs)
	for i, err := range errs {
		status, failing := outcome[msgs[i].AggregateID]
		var se *webhook.StatusError
		switch {
		case !failing && err != nil:
			t.Errorf("message %d: %v, want nil", i, err)
		case failing && (!errors.As(err, &se) || se.StatusCode != status):
			t.Errorf("message %d: %v, want status %d", i, err, status)
		case failing && outbox.IsPermanent(err) != (status < 408 || status == 410):
			t.Errorf("message %d: status %d permanent=%v", i, status, outbox.IsPermanent(err))
		}
	}
}

// TestConcurrencyBounded: a batch's deliveries overlap, up to
// Config.Concurrency across concurrent Publish calls.
func TestConcurrencyBounded(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	ep.respond = func(http.ResponseWriter, *http.Request, outbox.CloudEvent) int {
		time.Sleep(20 * time.Millisecond)
		return http.StatusOK
	}
	cfg := webhookConfig()
	cfg.Concurrency = 4
	p := newPublisher(t, ep, secrets, cfg)
	done := make(chan []error)
	for w := range 3 {
		go func() { done <- p.Publish(testCtx(t), publishertest.Batch(t, fmt.Sprintf("w%d", w), 20, 1)) }()
	}
	for range 3 {
		for i, err := range <-done {
			if err != nil {
				t.Errorf("message %d: %v", i, err)
			}
		}
	}
	if got := ep.maxConcurrent(); got < 2 || got > 4 {
		t.Fatalf("at most %d deliveries were in flight, want 2 to 4", got)
	}
}

// TestSameAggregateInBatch: should a batch hold several events of one
// aggregate (the relay never does), they go out one at a time in batch
// order, and after a failure the rest are held back, unsent and retryable.
func TestSameAggregateInBatch(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	ep.respond = func(_ http.ResponseWriter, _ *http.Request, ce outbox.CloudEvent) int {
		time.Sleep(5 * time.Millisecond) // room for an overlap to show
		if ce.Subject == "b" && ce.Sequence == 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	p := newPublisher(t, ep, secrets, webhookConfig())
	var msgs []outbox.Message
	for seq := int64(1); seq <= 4; seq++ {
		for _, agg := range []string{"a", "b", "c"} {
			msgs = append(msgs, publishertest.NewMessage(t, publishertest.NewRecord(agg, seq)))
		}
	}
	errs := p.Publish(testCtx(t), msgs)
	for i, err := range errs {
		m := msgs[i]
		switch {
		case m.AggregateID == "b" && m.Sequence == 2:
			if err == nil || outbox.IsPermanent(err) {
				t.Errorf("b/2: %v, want the 503", err)
			}
		case m.AggregateID == "b" && m.Sequence > 2:
			if !errors.Is(err, webhook.ErrHeldBack) || outbox.IsPermanent(err) {
				t.Errorf("b/%d: %v, want a retryable ErrHeldBack", m.Sequence, err)
			}
		case err != nil:
			t.Errorf("%s/%d: %v", m.AggregateID, m.Sequence, err)
		}
	}
	next := map[string]int64{}
	for _, d := range ep.deliveries() {
		if want := next[d.Event.Subject] + 1; d.Event.Sequence != want {
			t.Fatalf("aggregate %s: sequence %d arrived, want %d", d.Event.Subject, d.Event.Sequence, want)
		}
		next[d.Event.Subject]++
	}
	if next["a"] != 4 || next["b"] != 2 || next["c"] != 4 {
		t.Fatalf("deliveries per aggregate: %v, want a:4 b:2 (held back after the 503) c:4", next)
	}
}

// TestCloseWaits: Close returns only after the Publish calls in flight,
// which complete; later calls fail with ErrClosed, retryably.
func TestCloseWaits(t *testing.T) {
	t.Parallel()
	ep, secrets := newEndpoint(t, 1)
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	ep.respond = func(http.ResponseWriter, *http.Request, outbox.CloudEvent) int {
		arrived <- struct{}{}
		<-release
		return http.StatusOK
	}
	p := newPublisher(t, ep, secrets, webhookConfig())
	published := make(chan []error, 1)
	go func() { published <- p.Publish(testCtx(t), publishertest.Batch(t, "inflight", 2, 1)) }()
	<-arrived
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a Publish was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	for i, err := range <-published {
		if err != nil {
			t.Fatalf("the batch in flight, message %d: %v", i, err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, err := range p.Publish(testCtx(t), publishertest.Batch(t, "after", 2, 1)) {
		if !errors.Is(err, webhook.ErrClosed) || outbox.IsPermanent(err) {
			t.Fatalf("after Close: %v, want a retryable ErrClosed", err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestWireFormat reads the request as bytes off the socket: the body is
// the message's, unchanged, and the Standard Webhooks headers are spelled
// in the specification's lower case.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	raw := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			raw <- ""
			return
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var req strings.Builder
		buf := make([]byte, 64<<10)
		for !strings.Contains(req.String(), "}") { // the body is one JSON object
			n, err := c.Read(buf)
			req.Write(buf[:n])
			if err != nil {
				break
			}
		}
		_, _ = c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
		raw <- req.String()
	}()
	_, s := newSecret(t)
	p, err := webhook.New(webhook.Config{URL: "http://" + l.Addr().String() + "/in?a=%2F&b", Secrets: []webhook.Secret{s}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	m := publishertest.NewMessage(t, publishertest.NewRecord("wire", 1))
	if errs := p.Publish(testCtx(t), []outbox.Message{m}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	req := <-raw
	head, body, _ := strings.Cut(req, "\r\n\r\n")
	for _, want := range []string{
		"POST /in?a=%2F&b HTTP/1.1\r\n",
		"\r\nwebhook-id: " + m.ID.String() + "\r\n",
		"\r\nwebhook-timestamp: ",
		"\r\nwebhook-signature: v1,",
		"\r\nContent-Type: application/cloudevents+json\r\n",
		"\r\ntraceparent: " + m.Headers["traceparent"] + "\r\n",
		fmt.Sprintf("\r\nContent-Length: %d\r\n", len(m.Body)),
	} {
		if !strings.Contains(head, want) {
			t.Errorf("the request lacks %q:\n%s", want, head)
		}
	}
	if body != string(m.Body) {
		t.Fatalf("body on the wire:\n%s\nwant the message's:\n%s", body, m.Body)
	}
}

// An endpoint that breaks the connection after it received the request (a
// receiver crashing on this event) is a failure of the event, charged an
// attempt, not an outage of the endpoint; a refused connection is one.
func TestBrokenConnectionIsNotAnOutage(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		panic(http.ErrAbortHandler) // the server drops the connection without an answer
	}))
	t.Cleanup(srv.Close)
	_, secrets := newEndpoint(t, 1)
	cfg := webhookConfig()
	cfg.URL = srv.URL + "/hook"
	cfg.Secrets = secrets
	p, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	err = p.Publish(testCtx(t), publishertest.Batch(t, "crash", 1, 1))[0]
	if !errors.Is(err, webhook.ErrConnectionBroken) || errors.Is(err, outbox.ErrBrokerUnavailable) || outbox.IsPermanent(err) {
		t.Fatalf("a connection broken after the request: %v, want a retryable ErrConnectionBroken, not an outage", err)
	}
}

// dateSlack is how much sooner than the case says a Retry-After given as
// an HTTP date may fall due: the date was set when the test began, and a
// loaded machine may reach the case much later.
func dateSlack(header map[string]string) time.Duration {
	if _, err := http.ParseTime(header["Retry-After"]); err == nil {
		return 60 * time.Second
	}
	return 0
}
