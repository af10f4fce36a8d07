package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/webhook"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// BenchmarkPublish posts batches of 500 events, the relay's default batch
// size, to an endpoint on loopback (HTTP/1.1, kept-alive connections) that
// acknowledges each with 204, and reports acknowledged messages per
// second: through the Publisher, and through the tightest plain loop that
// sends the same signed POSTs with the same concurrency directly with
// net/http, awaiting every answer of the batch. Interleaved alternates the
// two batch by batch, so that a busy machine slows both alike, and reports
// their ratio (Publisher msgs/s ÷ plain loop msgs/s), and the same ratio
// of the process's CPU time per message, which a shared machine's other
// load disturbs less than wall time.
//
//	go test -run '^$' -bench Publish -benchtime 40x -count 3 ./broker/webhook/
func BenchmarkPublish(b *testing.B) {
	const batch, concurrency = 500, webhook.DefaultConcurrency
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	secretText, secret := newSecret(b)
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secretText, "whsec_"))
	if err != nil {
		b.Fatal(err)
	}
	url := srv.URL + "/hook?token=x"
	msgs := publishertest.Batch(b, "bench", batch, 1)

	newPublisher := func(b *testing.B) *webhook.Publisher {
		p, err := webhook.New(webhook.Config{URL: url, Secrets: []webhook.Secret{secret}, Concurrency: concurrency})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = p.Close() })
		return p
	}
	publish := func(b *testing.B, p *webhook.Publisher) {
		for i, err := range p.Publish(testCtx(b), msgs) {
			if err != nil {
				b.Fatalf("message %d: %v", i, err)
			}
		}
	}
	newPlain := func(b *testing.B) *plainLoop {
		pl := newPlainLoop(url, key, concurrency)
		b.Cleanup(pl.tr.CloseIdleConnections)
		return pl
	}
	plain := func(b *testing.B, pl *plainLoop) {
		if err := pl.send(testCtx(b), msgs); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("Publisher", func(b *testing.B) {
		p := newPublisher(b)
		b.ReportAllocs()
		for b.Loop() {
			publish(b, p)
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("PlainLoop", func(b *testing.B) {
		pl := newPlain(b)
		b.ReportAllocs()
		for b.Loop() {
			plain(b, pl)
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("Interleaved", func(b *testing.B) {
		p, pl := newPublisher(b), newPlain(b)
		var wallPublisher, wallPlain, cpuPublisher, cpuPlain time.Duration
		for b.Loop() {
			start, cpuStart := time.Now(), cpuTime()
			publish(b, p)
			mid, cpuMid := time.Now(), cpuTime()
			plain(b, pl)
			wallPublisher += mid.Sub(start)
			wallPlain += time.Since(mid)
			cpuPublisher += cpuMid - cpuStart
			cpuPlain += cpuTime() - cpuMid
		}
		n := float64(b.N * batch)
		b.ReportMetric(n/wallPublisher.Seconds(), "publisher-msgs/s")
		b.ReportMetric(n/wallPlain.Seconds(), "plain-msgs/s")
		b.ReportMetric(wallPlain.Seconds()/wallPublisher.Seconds(), "ratio")
		// CPU time per message, the endpoint's included (the same in both).
		b.ReportMetric(float64(cpuPublisher.Microseconds())/n, "publisher-cpu-µs/msg")
		b.ReportMetric(float64(cpuPlain.Microseconds())/n, "plain-cpu-µs/msg")
		if cpuPublisher > 0 {
			b.ReportMetric(cpuPlain.Seconds()/cpuPublisher.Seconds(), "cpu-ratio")
		}
	})
}

// plainLoop sends a batch as directly as net/http allows: concurrency
// workers, each signing and POSTing the next message, on a transport with
// as many kept-alive connections.
type plainLoop struct {
	url         string
	key         []byte
	concurrency int
	tr          *http.Transport
	client      *http.Client
}

func newPlainLoop(url string, key []byte, concurrency int) *plainLoop {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency
	return &plainLoop{url: url, key: key, concurrency: concurrency, tr: tr, client: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (pl *plainLoop) send(ctx context.Context, msgs []outbox.Message) error {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range pl.concurrency {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(msgs); i = int(next.Add(1) - 1) {
				if !pl.post(ctx, &msgs[i]) {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d deliveries failed", n, len(msgs))
	}
	return nil
}

func (pl *plainLoop) post(ctx context.Context, m *outbox.Message) bool {
	id := m.ID.String()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, pl.key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(m.Body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pl.url, bytes.NewReader(m.Body))
	if err != nil {
		return false
	}
	req.Header = http.Header{
		"Content-Type":      {"application/cloudevents+json"},
		"User-Agent":        {"herald-webhook"},
		"webhook-id":        {id},
		"webhook-timestamp": {ts},
		"webhook-signature": {"v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))},
		"Idempotency-Key":   {`"` + id + `"`},
		"traceparent":       {m.Headers["traceparent"]},
	}
	resp, err := pl.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}
