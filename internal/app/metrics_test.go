package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/outbox"
)

// countingAdmin is an outbox.Admin whose Stats counts its calls; with gate
// set, each call waits for it to close. Its other methods are not used.
type countingAdmin struct {
	outbox.Admin
	mu    sync.Mutex
	stats outbox.Stats
	err   error
	calls atomic.Int64
	gate  chan struct{}
	once  sync.Once
	entry chan struct{} // closed by the first call
}

func newCountingAdmin(st outbox.Stats, err error) *countingAdmin {
	return &countingAdmin{stats: st, err: err, entry: make(chan struct{})}
}

func (a *countingAdmin) Stats(ctx context.Context) (outbox.Stats, error) {
	a.calls.Add(1)
	a.once.Do(func() { close(a.entry) })
	if a.gate != nil {
		select {
		case <-a.gate:
		case <-ctx.Done():
			return outbox.Stats{}, ctx.Err()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats, a.err
}

// set changes what Stats answers.
func (a *countingAdmin) set(st outbox.Stats, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats, a.err = st, err
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// scrape GETs /metrics from srv and returns the status and the body.
func scrape(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return resp.StatusCode, string(b)
}

// metricsServer serves a registry of the outbox collector on store, as the
// metrics listener does, with the clock c.
func metricsServer(t *testing.T, store outbox.Admin, c *clock) (*httptest.Server, *http.Client) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newOutboxCollector(store, func() outbox.RelayCounters { return outbox.RelayCounters{Published: 4} },
		statsInterval, c.now))
	ts := httptest.NewServer(metricsHandler(reg))
	t.Cleanup(ts.Close)
	client := ts.Client()
	t.Cleanup(client.CloseIdleConnections)
	return ts, client
}

// Concurrent scrapes within the interval share one Stats query: 40
// scraping loops once put 40 queries on every write's database.
func TestMetricsScrapesShareOneStatsQuery(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &clock{t: t0}
	store := newCountingAdmin(outbox.Stats{Pending: 7, Retrying: 2, DeadLetters: 3, Parked: 5, OldestPending: t0.Add(-10 * time.Second)}, nil)
	store.gate = make(chan struct{})
	ts, client := metricsServer(t, store, c)

	const scrapers = 40
	var wg sync.WaitGroup
	bodies := make([]string, scrapers)
	for i := range scrapers {
		wg.Go(func() {
			code, body := scrape(t, client, ts.URL)
			if code != http.StatusOK {
				t.Errorf("scrape %d: status %d: %s", i, code, body)
			}
			bodies[i] = body
		})
	}
	<-store.entry // one scrape is querying; the others arrive while it waits
	close(store.gate)
	wg.Wait()
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("%d concurrent scrapes made %d Stats queries, want 1", scrapers, n)
	}
	for i, body := range bodies {
		for _, want := range []string{"herald_outbox_pending 7\n", "herald_outbox_in_retry 2\n", "herald_outbox_dlq_size 3\n", "herald_outbox_parked 5\n",
			"herald_outbox_lag_seconds 10\n", "herald_relay_published_total 4\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("scrape %d lacks %q", i, want)
			}
		}
	}

	// Later in the interval: the snapshot again, and the lag is its oldest
	// pending event's age now.
	c.advance(statsInterval - time.Second)
	_, body := scrape(t, client, ts.URL)
	if n := store.calls.Load(); n != 1 {
		t.Errorf("a scrape within the interval queried again (%d queries)", n)
	}
	if want := "herald_outbox_lag_seconds 14\n"; !strings.Contains(body, want) {
		t.Errorf("the lag is not the snapshot's age at scrape time: want %q in\n%s", want, body)
	}

	// After the interval: one new query.
	c.advance(time.Second)
	scrape(t, client, ts.URL)
	scrape(t, client, ts.URL)
	if n := store.calls.Load(); n != 2 {
		t.Errorf("after the interval: %d queries, want 2", n)
	}
}

// A failing query is kept for the interval too: scrapers do not pile onto
// a database in trouble, and each scrape reports the failure.
func TestMetricsStatsFailureIsShared(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	store := newCountingAdmin(outbox.Stats{}, errors.New("database is down"))
	ts, client := metricsServer(t, store, c)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if code, body := scrape(t, client, ts.URL); code != http.StatusInternalServerError || !strings.Contains(body, "database is down") {
				t.Errorf("scrape with a failing database: %d %s", code, body)
			}
		})
	}
	wg.Wait()
	if n := store.calls.Load(); n != 1 {
		t.Errorf("10 scrapes of a failing database made %d Stats queries, want 1", n)
	}
	c.advance(statsInterval)
	store.set(outbox.Stats{Pending: 1}, nil)
	if code, body := scrape(t, client, ts.URL); code != http.StatusOK || !strings.Contains(body, "herald_outbox_pending 1\n") {
		t.Errorf("after the interval, a recovered database: %d %s", code, body)
	}
	if n := store.calls.Load(); n != 2 {
		t.Errorf("%d queries, want 2", n)
	}
}
