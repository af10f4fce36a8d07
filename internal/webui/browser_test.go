package webui_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/sqliteorders"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/internal/webui"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// screenshots makes TestBrowser write a PNG of each page to docs/ui:
//
//	go test ./internal/webui -run Browser -args -screenshots
var screenshots = flag.Bool("screenshots", false, "write screenshots of the UI's pages to docs/ui")

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// refusingBroker is a publisher that refuses, permanently, the events of
// the aggregates in refuse, and records the others in the order it
// acknowledged them.
type refusingBroker struct {
	mu        sync.Mutex
	refuseAll bool
	refuse    map[string]bool
	got       map[string][]string // aggregate id → "sequence:type" acknowledged
}

func (p *refusingBroker) Publish(_ context.Context, msgs []outbox.Message) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		if p.refuseAll || p.refuse[m.AggregateID] {
			errs[i] = outbox.Permanent(errors.New(`broker refused the message: <script>alert("x")</script>`))
			continue
		}
		p.got[m.AggregateID] = append(p.got[m.AggregateID], fmt.Sprintf("%d:%s", m.Sequence, m.Type))
	}
	return errs
}

func (p *refusingBroker) Close() error { return nil }

func (p *refusingBroker) set(id string, refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse[id] = refuse
}

func (p *refusingBroker) setAll(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseAll = refuse
}

func (p *refusingBroker) published(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got[id])
}

// herald is a Herald on SQLite with its relay, API and UI, listening on
// 127.0.0.1.
type herald struct {
	url    string
	driver *sqlitestore.Driver
	svc    *ordersvc.Service
	broker *refusingBroker
}

const browserToken = "browser-test-admin-token"

func startHerald(t *testing.T) *herald {
	t.Helper()
	ctx := context.Background()
	driver, err := sqlitestore.Open(testdb.SQLitePath(t), sqlitestore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	store := sqliteorders.New(driver.DB(), outbox.NewClient[*sql.Tx](driver))
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	h := &herald{driver: driver, svc: ordersvc.New(store, ordersvc.Config{}),
		broker: &refusingBroker{refuse: map[string]bool{}, got: map[string][]string{}}}
	relay := outbox.NewRelay(driver, h.broker, outbox.RelayConfig{PollInterval: 20 * time.Millisecond})
	live := webui.NewLive(relay)
	api := httpapi.New(httpapi.Config{
		Orders: h.svc, Outbox: driver, RelayCounters: relay.Counters, AdminToken: browserToken,
		Logger: slog.New(slog.DiscardHandler),
		UI:     &webui.Config{Live: live, LiveInterval: 500 * time.Millisecond},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api)
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Config.RegisterOnShutdown(live.Close)
	srv.Start()
	h.url = srv.URL

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(rctx) })
	wg.Go(func() { live.Run(rctx) })
	t.Cleanup(func() {
		live.Close()
		srv.Close()
		stop()
		wg.Wait()
		_ = store.Close()
		_ = driver.Close()
	})
	return h
}

func (h *herald) newOrder(t *testing.T, customer string) order.Order {
	t.Helper()
	o, err := h.svc.CreateOrder(context.Background(), order.CreateOrder{
		CustomerID: customer, Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p-1", ProductType: order.ProductPhysical, Quantity: 2, UnitPrice: 1999}},
	}, order.RequestOptions{Actor: "api"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// openDeadLetter waits for the open dead letter of order o.
func (h *herald) openDeadLetter(t *testing.T, o order.Order) outbox.DeadLetter {
	t.Helper()
	var dls []outbox.DeadLetter
	waitFor(t, "the dead letter of order "+o.ID.String(), func() bool {
		var err error
		dls, err = h.driver.ListDeadLetters(context.Background(), outbox.DeadLetterFilter{
			AggregateType: "order", AggregateID: o.ID.String(), State: outbox.DeadLetterOpen})
		if err != nil {
			t.Fatal(err)
		}
		return len(dls) == 1
	})
	return dls[0]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newBrowser starts headless chromium with a fresh profile, or skips the
// test when chromium is not installed (.ci/run installs it).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s is not installed (apt-get install chromium; .ci/run does): %v", chromiumPath, err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx() // closes the browser and waits for it
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// shoot saves a screenshot of the page as docs/ui/name.png with
// -screenshots.
func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if !*screenshots {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil { //nolint:gosec // a documentation image
		t.Fatal(err)
	}
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// textOf returns the text of the first element sel matches.
func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// waitText waits until the element sel matches holds want (the overview's
// live part changes under the page).
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to read %q", sel, want), func() bool {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		return err == nil && strings.Contains(s, want)
	})
}

// An operator logs in, sees the overview with an order's events parked
// behind its dead letter (made by a broker that refuses the order's
// events), replays the dead letter from the UI once the broker accepts
// them and sees the events published in order; discards another dead
// letter with a reason; and opens an order's timeline.
func TestBrowser(t *testing.T) {
	t.Parallel()
	h := startHerald(t)
	// Two orders whose creation the broker refuses: dead letters.
	h.broker.setAll(true)
	replayed, discarded := h.newOrder(t, "c-browser"), h.newOrder(t, "c-browser")
	h.openDeadLetter(t, replayed)
	discardedDL := h.openDeadLetter(t, discarded)
	h.broker.set(replayed.ID.String(), true)
	h.broker.set(discarded.ID.String(), true)
	h.broker.setAll(false)
	flowing := h.newOrder(t, "c-flowing")
	waitFor(t, "the flowing order's event", func() bool { return len(h.broker.published(flowing.ID.String())) == 1 })
	// The first order's payment confirmation: three events parked behind
	// its dead letter.
	if _, err := h.svc.ConfirmPayment(context.Background(), replayed.ID,
		order.ConfirmPayment{PaymentID: "pay-1", Amount: replayed.TotalAmount, Currency: "EUR"}, order.RequestOptions{Actor: "api"}); err != nil {
		t.Fatal(err)
	}
	ctx := newBrowser(t)

	// Log in: the overview asks for the admin token first.
	run(t, ctx, "open the UI",
		chromedp.Navigate(h.url+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")))
	shoot(t, ctx, "login")
	run(t, ctx, "log in",
		chromedp.SendKeys(chromedp.CSS("#token"), browserToken),
		chromedp.Click(chromedp.CSS("form.login button")),
		chromedp.WaitVisible(chromedp.CSS("#live")))

	// The overview: two open dead letters, three events parked; the live
	// part updates over SSE.
	waitText(t, ctx, "#fig-dlq", "2")
	waitText(t, ctx, "#fig-parked", "3")
	if v := textOf(t, ctx, "#health-h"); !strings.Contains(v, "degraded") {
		t.Errorf("health %q, want degraded", v)
	}
	waitFor(t, "a live update of the overview", func() bool {
		updated, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#live"), "data-updated"))
		return err == nil && updated.Exists
	})
	// A second after the relay started, the chart has its first point (the
	// rate since the first sample), sent by a live update.
	waitFor(t, "the chart's first point", func() bool {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#live circle.dot").length`))
		return err == nil && n == 1
	})
	shoot(t, ctx, "overview")

	// The dead letters: both listed, the error text escaped (shown as text).
	run(t, ctx, "open the dead letters",
		chromedp.Click(chromedp.CSS(`a[href="/ui/dead-letters"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.dlq")))
	if s := textOf(t, ctx, "table.dlq tbody"); !strings.Contains(s, `<script>alert("x")</script>`) {
		t.Errorf("the error text is not shown as text: %q", s)
	}
	shoot(t, ctx, "dead-letters")

	// Replay the first order's dead letter once the broker takes its events.
	h.broker.set(replayed.ID.String(), false)
	dl := h.openDeadLetter(t, replayed)
	run(t, ctx, "open the dead letter",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/ui/dead-letters/%d"]`, dl.ID))),
		chromedp.WaitVisible(chromedp.CSS("#parked-h")))
	if s := textOf(t, ctx, "#parked-h + table caption"); !strings.Contains(s, "3 events") || !strings.Contains(s, "parked") {
		t.Errorf("parked events caption %q", s)
	}
	shoot(t, ctx, "dead-letter")
	run(t, ctx, "ask to replay",
		chromedp.Click(chromedp.Search(`//a[normalize-space()="Replay…"]`)),
		chromedp.WaitVisible(chromedp.CSS("form.confirm")))
	shoot(t, ctx, "confirm-replay")
	run(t, ctx, "confirm the replay",
		chromedp.Click(chromedp.CSS("form.confirm button")),
		chromedp.WaitVisible(chromedp.CSS("p.flash.ok")))
	if s := textOf(t, ctx, "p.flash.ok"); !strings.Contains(s, fmt.Sprintf("Dead letter #%d replayed", dl.ID)) {
		t.Errorf("replay result %q", s)
	}
	want := []string{"1:order.created", "2:order.payment_confirmed", "3:order.status_changed", "4:line_item.status_changed"}
	waitFor(t, "the replayed order's events published", func() bool { return len(h.broker.published(replayed.ID.String())) >= len(want) })
	if got := h.broker.published(replayed.ID.String()); !slices.Equal(got, want) {
		t.Fatalf("published after the replay: %v, want %v", got, want)
	}

	// Discard the other with a reason.
	run(t, ctx, "open the other dead letter",
		chromedp.Navigate(fmt.Sprintf("%s/ui/dead-letters/%d", h.url, discardedDL.ID)),
		chromedp.Click(chromedp.Search(`//a[normalize-space()="Discard…"]`)),
		chromedp.WaitVisible(chromedp.CSS("#reason")))
	run(t, ctx, "try to discard without a reason",
		chromedp.Click(chromedp.CSS("form.confirm button"))) // the browser refuses the required field
	if got, err := h.driver.GetDeadLetter(context.Background(), discardedDL.ID); err != nil || got.State() != outbox.DeadLetterOpen {
		t.Fatalf("dead letter after an empty discard: %v, %v", got.State(), err)
	}
	run(t, ctx, "discard with a reason",
		chromedp.SendKeys(chromedp.CSS("#reason"), "test order, never shipped"),
		chromedp.Click(chromedp.CSS("form.confirm button")),
		chromedp.WaitVisible(chromedp.CSS("p.flash.ok")))
	if got, err := h.driver.GetDeadLetter(context.Background(), discardedDL.ID); err != nil ||
		got.State() != outbox.DeadLetterDiscarded || got.DiscardReason != "test order, never shipped" {
		t.Fatalf("dead letter after the discard: %+v, %v", got, err)
	}

	// The replayed order's timeline: every event published, beside its
	// transition.
	run(t, ctx, "search the order",
		chromedp.Click(chromedp.CSS(`a[href="/ui/orders"]`)),
		chromedp.WaitVisible(chromedp.CSS("#q-id")))
	shoot(t, ctx, "orders")
	run(t, ctx, "open the timeline",
		chromedp.SendKeys(chromedp.CSS("#q-id"), replayed.ID.String()),
		chromedp.Submit(chromedp.CSS("#q-id")),
		chromedp.WaitVisible(chromedp.CSS("table.timeline")))
	var last []string
	defer func() {
		if t.Failed() {
			t.Logf("timeline states: %v", last)
		}
	}()
	waitFor(t, "every event of the timeline published", func() bool {
		run(t, ctx, "reload the timeline", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("table.timeline")))
		states, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("table.timeline .state")).map(e => e.textContent)`))
		if err != nil {
			t.Fatal(err)
		}
		last = states
		// created, the order's and the line item's payment confirmation (the
		// order.payment_confirmed event has no transition and, published, no
		// row left to show).
		return slices.Equal(states, []string{"published", "published", "published"})
	})
	if s := textOf(t, ctx, "table.timeline"); !strings.Contains(s, "pending → payment_confirmed") || !strings.Contains(s, "after a replay") {
		t.Errorf("timeline:\n%s", s)
	}
	shoot(t, ctx, "order-timeline")

	// Readable on a phone.
	if *screenshots {
		run(t, ctx, "phone size", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(h.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#live")))
		shoot(t, ctx, "overview-phone")
	}
}
