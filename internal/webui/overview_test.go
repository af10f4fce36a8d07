package webui

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// fakeRelay is a relay's counters and workers as the test sets them.
type fakeRelay struct {
	mu      sync.Mutex
	c       outbox.RelayCounters
	workers []outbox.WorkerStatus
}

func (f *fakeRelay) Counters() outbox.RelayCounters {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.c
}

func (f *fakeRelay) Workers() []outbox.WorkerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.workers
}

func (f *fakeRelay) publish(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.Published += n
}

// The overview shows the backlog's figures, the health verdict with its
// reasons, the relay's workers and the published-per-second chart.
func TestOverview(t *testing.T) {
	t.Parallel()
	relay := &fakeRelay{workers: []outbox.WorkerStatus{
		{Worker: 0, LastClaim: time.Now(), Claims: 7, LastEvents: time.Now(), LastEventsClaimed: 3},
		{Worker: 1, LastClaim: time.Now(), Claims: 2, LastClaimed: 1, LastError: "claim: <db> gone"},
	}}
	live := NewLive(relay)
	b := setup(t, func(c *Config) { c.Live = live })
	b.login(t)
	start := time.Now().Add(-29 * SampleInterval) // the last sample now: no point after it yet
	for i := range 30 {                           // 10 events per 10 s: 1/s
		relay.publish(10)
		live.sample(start.Add(time.Duration(i) * SampleInterval))
	}
	o := b.newOrder(t, "c-ov")
	b.settle(t, func(outbox.Record) outbox.Outcome {
		return outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "no"}
	})
	b.confirmPayment(t, o) // three events parked behind the dead letter
	r := b.do(t, http.MethodGet, Prefix, nil)
	r.expect(t, http.StatusOK,
		`<dd id="fig-pending">3</dd>`, `<dd id="fig-parked">3</dd>`, `<dd id="fig-retry">0</dd>`,
		`<a href="/ui/dead-letters">1</a>`,
		"Health: <span class=\"verdict\">degraded</span>", "3 pending events parked behind open dead letters",
		`<polyline class="line" points="`, "latest 1.0/s", `<span id="fig-published">300</span> published`,
		"claim: &lt;db&gt; gone", "(3 events)", "(1 event)", `data-stream="/ui/events"`)
	if strings.Contains(r.Body, "No relay runs") {
		t.Error("the overview says no relay runs")
	}

	// Without a relay in the process, the overview says so.
	b2 := setup(t)
	b2.login(t)
	b2.do(t, http.MethodGet, Prefix, nil).expect(t, http.StatusOK, "No relay runs in this process", "Health: <span class=\"verdict\">ok</span>")
}

// The health verdict is the one Config.Health gives (the API's); when it
// fails the page still renders and says the verdict is unknown.
func TestOverviewHealthFromConfig(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.Health = func(context.Context) (outbox.Health, error) {
			return outbox.Health{Verdict: outbox.HealthFailing, Reasons: []string{"broker is unreachable"}}, nil
		}
	})
	b.login(t)
	b.do(t, http.MethodGet, Prefix, nil).expect(t, http.StatusOK, "failing", "broker is unreachable")
	b2 := setup(t, func(c *Config) {
		c.Health = func(context.Context) (outbox.Health, error) { return outbox.Health{}, errors.New("boom") }
	})
	b2.login(t)
	b2.do(t, http.MethodGet, Prefix, nil).expect(t, http.StatusOK, "unknown", "could not be had")
}

// The chart's rate is the published count's growth over each interval; a
// ring full of samples drops the oldest, and samples older than the window
// are left out.
func TestLiveRates(t *testing.T) {
	t.Parallel()
	relay := &fakeRelay{}
	l := NewLive(relay)
	now := time.Now()
	if got := l.rates(now); len(got) != 0 {
		t.Fatalf("rates without samples: %v", got)
	}
	start := now.Add(-2 * ChartWindow)
	n := 2 * ringSize
	for i := range n {
		relay.publish(uint64(i % 3 * 10)) // 0, 10, 20 per interval: 0, 1, 2 per second
		l.sample(start.Add(time.Duration(i) * SampleInterval))
	}
	last := start.Add(time.Duration(n-1) * SampleInterval)
	got := l.rates(last)
	if len(got) != ringSize-1 {
		t.Fatalf("%d points, want %d (a full ring)", len(got), ringSize-1)
	}
	for i, p := range got {
		want := float64((n - ringSize + 1 + i) % 3) // the interval's i%3*10 events over 10 s
		if p.rate != want {
			t.Fatalf("point %d at %v: rate %v, want %v", i, p.at, p.rate, want)
		}
	}
	if got := l.rates(last.Add(ChartWindow / 2)); len(got) >= ringSize-1 || len(got) == 0 {
		t.Errorf("half a window later: %d points, want about half", len(got))
	}
	// Between samples the latest point is the rate since the last one.
	relay.publish(30)
	at := last.Add(15 * time.Second)
	if cur := l.rates(at); len(cur) == 0 || !cur[len(cur)-1].at.Equal(at) || cur[len(cur)-1].rate != 2 {
		t.Errorf("15 s after the last sample, 30 more published: the points end %+v, want 2/s at %v", cur[len(cur)-1], at)
	}
	if cur := l.rates(last.Add(500 * time.Millisecond)); len(cur) != ringSize-1 {
		t.Errorf("half a second after the last sample: %d points, want no point for it", len(cur))
	}
	c := newChart(got, last)
	if c.Peak != "2.0" || c.Samples != ringSize-1 || strings.Count(c.Points, ",") != ringSize-1 {
		t.Errorf("chart %+v", c)
	}
}

// The event stream sends the overview's live part at once and then every
// LiveInterval, and ends when Live is closed (the server shutting down).
func TestEventStream(t *testing.T) {
	t.Parallel()
	relay := &fakeRelay{}
	live := NewLive(relay)
	b := setup(t, func(c *Config) { c.Live, c.LiveInterval = live, 10*time.Millisecond })
	b.login(t)
	srv := httptest.NewServer(b.ui)
	defer srv.Close()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+Prefix+"events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(b.cookie)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	event := func() (name, data string) {
		var lines []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				return name, strings.Join(lines, "\n")
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				lines = append(lines, strings.TrimPrefix(line, "data: "))
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return "", ""
	}
	name, data := event()
	if name != "overview" || !strings.Contains(data, `<dd id="fig-pending">0</dd>`) || strings.Contains(data, "<html") {
		t.Fatalf("first event %q:\n%s", name, data)
	}
	relay.publish(42)
	for !strings.Contains(data, `<span id="fig-published">42</span>`) {
		_, data = event()
	}
	live.Close()
	for sc.Scan() { // the server ends the stream
	}
}
