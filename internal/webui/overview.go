package webui

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/outbox"
)

// overviewData is the overview's live part.
type overviewData struct {
	Stats     outbox.Stats
	Lag       time.Duration // age of the oldest pending event; 0 when none
	Health    outbox.Health
	HealthErr bool // the verdict could not be had
	Relay     bool // a relay runs in this process
	Counters  outbox.RelayCounters
	Workers   []outbox.WorkerStatus
	Chart     chart
	At        time.Time
}

// chart is the published-per-second line as SVG coordinates.
type chart struct {
	Width, Height int
	ViewBox       string // the plot with a margin, so that the latest point's mark shows whole
	Points        string // the polyline's "x,y x,y …"
	Peak          string // the y axis' top, events per second
	Latest        string
	Samples       int
	LastX, LastY  string // the latest point, marked: one point draws no line
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 600
	chartHeight = 120
	chartMargin = 5
)

// chartViewBox is the plot with chartMargin around it.
var chartViewBox = fmt.Sprintf("-%d -%d %d %d", chartMargin, chartMargin, chartWidth+2*chartMargin, chartHeight+2*chartMargin)

func newChart(points []point, now time.Time) chart {
	c := chart{Width: chartWidth, Height: chartHeight, ViewBox: chartViewBox, Samples: len(points), Peak: "0", Latest: "0"}
	if len(points) == 0 {
		return c
	}
	peak := 0.0
	for _, p := range points {
		peak = max(peak, p.rate)
	}
	top := max(peak, 1) // a flat zero line sits at the bottom, not the middle
	start := now.Add(-ChartWindow)
	var b strings.Builder
	for i, p := range points {
		x := min(max(float64(chartWidth)*p.at.Sub(start).Seconds()/ChartWindow.Seconds(), 0), chartWidth)
		y := float64(chartHeight) * (1 - p.rate/top)
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
		c.LastX, c.LastY = strconv.FormatFloat(x, 'f', 1, 64), strconv.FormatFloat(y, 'f', 1, 64)
	}
	c.Points = b.String()
	c.Peak = formatRate(peak)
	c.Latest = formatRate(points[len(points)-1].rate)
	return c
}

func formatRate(r float64) string {
	if r >= 10 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// overviewNow reads the figures the overview shows.
func (h *Handler) overviewNow(ctx context.Context) (overviewData, error) {
	st, err := h.cfg.Outbox.Stats(ctx)
	if err != nil {
		return overviewData{}, err
	}
	now := time.Now()
	d := overviewData{Stats: st, At: now}
	if !st.OldestPending.IsZero() {
		d.Lag = max(0, now.Sub(st.OldestPending))
	}
	if h.cfg.Health != nil {
		if d.Health, err = h.cfg.Health(ctx); err != nil {
			h.log.WarnContext(ctx, "webui: health verdict", "err", err)
			d.HealthErr = true
		}
	} else {
		d.Health = outbox.Assess(outbox.HealthInput{Stats: st, Now: now}, outbox.HealthThresholds{})
	}
	if l := h.cfg.Live; l != nil {
		d.Relay = true
		d.Counters = l.relay.Counters()
		d.Workers = l.relay.Workers()
		d.Chart = newChart(l.rates(now), now)
	}
	return d, nil
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := h.overviewNow(r.Context())
	if err != nil {
		h.internal(w, r, s, "read the outbox's figures", err)
		return
	}
	h.render(w, r, http.StatusOK, "overview", s, d)
}

// events serves the overview's live part as a stream of Server-Sent
// Events: an "overview" event holding the part's HTML every LiveInterval,
// until the client goes or the server stops.
func (h *Handler) events(w http.ResponseWriter, r *http.Request, _ *session) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var done <-chan struct{}
	if h.cfg.Live != nil {
		done = h.cfg.Live.done
	}
	tick := time.NewTicker(h.cfg.LiveInterval)
	defer tick.Stop()
	for {
		if err := h.sendOverview(r.Context(), w, rc); err != nil {
			return // the client went away
		}
		select {
		case <-r.Context().Done():
			return
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// sendOverview writes one "overview" event. The server's write timeout
// would cut a long stream: each event extends the deadline.
func (h *Handler) sendOverview(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController) error {
	var html bytes.Buffer
	if d, err := h.overviewNow(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.log.WarnContext(ctx, "webui: live overview", "err", err)
		html.WriteString(`<p class="flash error">The outbox's figures could not be read; retrying.</p>`)
	} else if err := h.pages["overview"].ExecuteTemplate(&html, "live", d); err != nil {
		return err
	}
	var ev bytes.Buffer
	ev.WriteString("retry: 5000\nevent: overview\n")
	for line := range strings.SplitSeq(html.String(), "\n") {
		ev.WriteString("data: " + strings.TrimRight(line, "\r") + "\n")
	}
	ev.WriteString("\n")
	_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.LiveInterval + 30*time.Second))
	if _, err := w.Write(ev.Bytes()); err != nil {
		return err
	}
	return rc.Flush()
}
