package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/heraldhq/herald/outbox"
)

// userAgent names the sender to the endpoint.
const userAgent = "herald-webhook"

// Bounds on reading an answer's body: a snippet for the error, and a
// drain so that the keep-alive connection can carry the next request.
const (
	snippetBytes = 256
	drainBytes   = 64 << 10
)

// sendChain delivers the messages of one aggregate, from msgs[i] on along
// next, in order; after a failure the rest are held back, unsent.
func (p *Publisher) sendChain(ctx context.Context, msgs []outbox.Message, i int, next []int, errs []error) {
	failed := -1
	for ; i >= 0; i = next[i] {
		switch {
		case ctx.Err() != nil:
			errs[i] = p.ctxError(ctx.Err())
		case failed >= 0:
			errs[i] = fmt.Errorf("%w: event %s waits for event %s", ErrHeldBack, msgs[i].ID, msgs[failed].ID)
		default:
			errs[i] = p.deliver(ctx, &msgs[i])
		}
		if errs[i] != nil && failed < 0 {
			failed = i
		}
	}
}

// deliver POSTs one message and classifies the outcome.
func (p *Publisher) deliver(ctx context.Context, m *outbox.Message) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return p.ctxError(ctx.Err())
	}
	defer func() { <-p.sem }()

	rctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, p.cfg.URL, bytes.NewReader(m.Body))
	if err != nil { // the URL was checked by New; nothing else can fail
		return fmt.Errorf("webhook: POST %s: %w", p.endpoint, err)
	}
	req.Header = p.header(m)
	resp, err := p.client.Do(req)
	if err != nil {
		return p.requestError(ctx, rctx, err)
	}
	defer func() { _ = resp.Body.Close() }() // the body is read or abandoned; nothing to do if closing fails
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
		return nil
	}
	se := &StatusError{
		StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Body:       snippet(resp.Body),
	}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		se.Location = redactURL(loc)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
	err = fmt.Errorf("webhook: POST %s: %w", p.endpoint, se)
	if se.Transient() {
		return err
	}
	return outbox.Permanent(err)
}

// header builds the request's headers. The Standard Webhooks names are set
// in the specification's lower case (http.Header.Set would send
// Webhook-Id); the attempt's timestamp is signed with the id and body.
func (p *Publisher) header(m *outbox.Message) http.Header {
	id := m.ID.String()
	ts := time.Now().Unix()
	// One backing array for the values: a delivery's allocations count.
	v := [...]string{
		ContentType, userAgent, id, strconv.FormatInt(ts, 10), Sign(p.cfg.Secrets, id, ts, m.Body),
		// The event id keys the delivery (draft-ietf-httpapi-idempotency-
		// key-header). It also lets Go's transport resend the request on a
		// fresh connection when a kept-alive one turns out closed by the
		// endpoint, which it does only for requests marked idempotent.
		`"` + id + `"`,
		m.Headers["traceparent"], m.Headers["tracestate"],
	}
	vals := v[:]
	h := make(http.Header, 8)
	for i, k := range [...]string{"Content-Type", "User-Agent", HeaderID, HeaderTimestamp, HeaderSignature, "Idempotency-Key", "traceparent", "tracestate"} {
		if vals[i] != "" {
			h[k] = vals[i : i+1 : i+1]
		}
	}
	return h
}

// requestError classifies a request that got no answer: ctx's end, the
// per-request timeout, or a connection failure.
func (p *Publisher) requestError(ctx, rctx context.Context, err error) error {
	if ctx.Err() != nil {
		return p.ctxError(ctx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // without the URL, which may carry the endpoint's token
	}
	if rctx.Err() != nil || (ue != nil && ue.Timeout()) {
		return fmt.Errorf("%w (%s): POST %s", ErrTimeout, p.cfg.Timeout, p.endpoint)
	}
	// Unreachable (an outage: no attempt is charged) only when nothing
	// reached the endpoint. A connection that broke after the request went
	// out may be the endpoint failing on this event: charged, so that a
	// poison event is dead-lettered in the end.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("%w: POST %s: %w", ErrUnreachable, p.endpoint, err)
	}
	return fmt.Errorf("%w: POST %s: %w", ErrConnectionBroken, p.endpoint, err)
}

func (p *Publisher) ctxError(err error) error {
	return fmt.Errorf("webhook: POST %s: %w", p.endpoint, err)
}

// snippet reads the start of an answer's body as one printable line.
func snippet(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, snippetBytes))
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
