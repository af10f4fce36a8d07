package webui

import (
	"context"
	"sync"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// Chart bounds: the overview's published-per-second chart covers
// ChartWindow in samples SampleInterval apart.
const (
	ChartWindow    = 15 * time.Minute
	SampleInterval = 10 * time.Second
	ringSize       = int(ChartWindow/SampleInterval) + 1
)

// Relay is what the UI reads of the in-process relay; *outbox.Relay is one.
type Relay interface {
	Counters() outbox.RelayCounters
	Workers() []outbox.WorkerStatus
}

// Live keeps the in-process relay's counters as a ring of samples for the
// overview's chart, and ends the UI's event streams when the server stops.
// Run it for as long as the relay runs; call Close when the HTTP server
// shuts down (http.Server.RegisterOnShutdown), since an event stream never
// goes idle by itself.
type Live struct {
	relay    Relay
	interval time.Duration

	mu    sync.Mutex
	ring  [ringSize]sample
	next  int // where the next sample goes
	count int // samples held, at most ringSize

	done      chan struct{}
	closeOnce sync.Once
}

type sample struct {
	at        time.Time
	published uint64
}

// NewLive returns a Live over relay; nothing is sampled until Run.
func NewLive(relay Relay) *Live {
	return &Live{relay: relay, interval: SampleInterval, done: make(chan struct{})}
}

// Run samples the relay's counters every SampleInterval until ctx ends.
func (l *Live) Run(ctx context.Context) {
	l.sample(time.Now())
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			l.sample(now)
		}
	}
}

// Close ends every event stream the UI serves; it is safe to call twice.
func (l *Live) Close() { l.closeOnce.Do(func() { close(l.done) }) }

// sample records the relay's published count at now.
func (l *Live) sample(now time.Time) {
	c := l.relay.Counters()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = sample{at: now, published: c.Published}
	l.next = (l.next + 1) % ringSize
	l.count = min(l.count+1, ringSize)
}

// point is the rate of publishing between two samples, at the later one.
type point struct {
	at   time.Time
	rate float64 // events per second
}

// rates returns the published-per-second rate between consecutive samples
// taken within ChartWindow of now, oldest first, and then the rate from the
// last sample until now (when that is a second or more), so that the
// chart's latest point is current rather than up to SampleInterval old,
// and a relay that has just started shows at once.
func (l *Live) rates(now time.Time) []point {
	published := l.relay.Counters().Published
	l.mu.Lock()
	defer l.mu.Unlock()
	samples := make([]sample, 0, l.count)
	for i := range l.count {
		samples = append(samples, l.ring[(l.next-l.count+i+ringSize)%ringSize])
	}
	var out []point
	for i := 1; i < len(samples); i++ {
		prev, cur := samples[i-1], samples[i]
		if now.Sub(cur.at) > ChartWindow || !cur.at.After(prev.at) || cur.published < prev.published {
			continue
		}
		out = append(out, point{at: cur.at, rate: float64(cur.published-prev.published) / cur.at.Sub(prev.at).Seconds()})
	}
	if n := len(samples); n > 0 {
		last := samples[n-1]
		if d := now.Sub(last.at); d >= time.Second && published >= last.published {
			out = append(out, point{at: now, rate: float64(published-last.published) / d.Seconds()})
		}
	}
	return out
}
