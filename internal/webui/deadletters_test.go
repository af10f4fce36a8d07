package webui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/heraldhq/herald/outbox"
)

// Payloads, headers, aggregate ids and error texts are attacker-shaped:
// every page shows them escaped, and no page holds inline script or style.
func TestAttackerShapedTextIsEscaped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	dl := b.deadLetterOf(t, `<img src=x onerror=alert(1)>`,
		`{"note":"<script>alert('payload')</script>","html":"</pre><b>bold</b>"}`,
		map[string]string{"x-evil": `"><script>alert('header')</script>`},
		`broker said <script>alert('error')</script>`)
	pages := map[string]resp{
		"list":    b.do(t, http.MethodGet, Prefix+"dead-letters", nil),
		"detail":  b.do(t, http.MethodGet, Prefix+"dead-letters/"+itoa(dl.ID), nil),
		"confirm": b.do(t, http.MethodGet, Prefix+"dead-letters/confirm?action=discard&id="+itoa(dl.ID), nil),
		"filter":  b.do(t, http.MethodGet, Prefix+"dead-letters?error="+url.QueryEscape("<script>x</script>"), nil),
		"orders":  b.do(t, http.MethodGet, Prefix+"orders?customer="+url.QueryEscape(`"><script>alert(1)</script>`), nil),
	}
	for name, r := range pages {
		if r.Code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", name, r.Code, r.Body)
		}
		for _, bad := range []string{"<script>alert", "<img src=x", "<b>bold", " style=", "onerror=alert(1)>"} {
			if strings.Contains(r.Body, bad) {
				t.Errorf("%s page holds %q unescaped", name, bad)
			}
		}
		if n := strings.Count(r.Body, "<script"); n != 1 || !strings.Contains(r.Body, `<script src="/ui/static/app.js" defer></script>`) {
			t.Errorf("%s page: %d script elements, want only app.js", name, n)
		}
	}
	pages["detail"].expect(t, http.StatusOK,
		`&lt;script&gt;alert(&#39;payload&#39;)&lt;/script&gt;`,
		`broker said &lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;`,
		`&#34;&gt;&lt;script&gt;alert(&#39;header&#39;)&lt;/script&gt;`,
		`&lt;img src=x onerror=alert(1)&gt;`)
}

// The list filters by state, aggregate, event type and error text; a
// filter the outbox refuses is shown beside its field with a 400.
func TestDeadLetterListFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	gone := b.deadLetterOf(t, "a-1", `{}`, nil, "webhook: 410 Gone")
	b.deadLetterOf(t, "a-2", `{}`, nil, "nats: no responders")
	if err := b.driver.DiscardDeadLetter(context.Background(), gone.ID, "obsolete"); err != nil {
		t.Fatal(err)
	}
	rows := func(r resp) int { return strings.Count(r.Body, `<td><a href="/ui/dead-letters/`) }
	r := b.do(t, http.MethodGet, Prefix+"dead-letters", nil)
	if r.expect(t, http.StatusOK, "a-2", "no responders"); rows(r) != 1 {
		t.Errorf("default list: %d rows, want the one open dead letter", rows(r))
	}
	for q, want := range map[string]int{
		"state=all":                           2,
		"state=discarded":                     1,
		"state=all&error=410":                 1,
		"state=all&error=gone":                0,
		"state=all&aggregate_id=a-2":          1,
		"state=all&aggregate_type=order":      0,
		"state=all&event_type=thing.happened": 2,
	} {
		if got := rows(b.do(t, http.MethodGet, Prefix+"dead-letters?"+q, nil)); got != want {
			t.Errorf("%s: %d rows, want %d", q, got, want)
		}
	}
	b.do(t, http.MethodGet, Prefix+"dead-letters?state=lost&aggregate_id=%01", nil).expect(t, http.StatusBadRequest,
		"must be one of open, replayed, discarded or all", "must not contain control characters")
}

// A dead letter's page shows its payload, headers, error, attempts, its
// earlier dead-letterings and the events parked behind it.
func TestDeadLetterDetail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	o := b.newOrder(t, "c-detail")
	b.settle(t, func(outbox.Record) outbox.Outcome {
		return outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "first failure"}
	})
	first := b.openOf(t, o.ID.String())
	if err := b.driver.ReplayDeadLetter(context.Background(), first.ID); err != nil {
		t.Fatal(err)
	}
	b.settle(t, func(outbox.Record) outbox.Outcome {
		return outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "second failure"}
	})
	dl := b.openOf(t, o.ID.String())
	b.confirmPayment(t, o)
	r := b.do(t, http.MethodGet, Prefix+"dead-letters/"+itoa(dl.ID), nil)
	r.expect(t, http.StatusOK, "order.created", "second failure", `&#34;customer_id&#34;: &#34;c-detail&#34;`,
		"/ui/dead-letters/"+itoa(first.ID), "first failure", // history
		"3 events in the outbox after sequence 1: parked until this dead letter is replayed or discarded",
		"order.payment_confirmed", "/ui/orders/"+o.ID.String(), "Replay…", "Discard…")
	b.do(t, http.MethodGet, Prefix+"dead-letters/999999", nil).expect(t, http.StatusNotFound, "There is no dead letter 999999.")
	b.do(t, http.MethodGet, Prefix+"dead-letters/x", nil).expect(t, http.StatusNotFound)
}

// Replaying a selection goes through a confirmation page and reports each
// dead letter's outcome on the page it returns to; nothing changes before
// the confirmation is posted.
func TestReplaySelection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	d1 := b.deadLetterOf(t, "s-1", `{}`, nil, "no")
	d2 := b.deadLetterOf(t, "s-2", `{}`, nil, "no")
	d3 := b.deadLetterOf(t, "s-3", `{}`, nil, "no")
	if err := b.driver.DiscardDeadLetter(context.Background(), d3.ID, "gone"); err != nil {
		t.Fatal(err)
	}
	back := "/ui/dead-letters?state=all"
	r := b.do(t, http.MethodGet, Prefix+"dead-letters/confirm?action=replay&id="+itoa(d1.ID)+"&id="+itoa(d2.ID)+"&id="+itoa(d3.ID)+"&back="+url.QueryEscape(back), nil)
	r.expect(t, http.StatusOK, "Replay 2 dead letters?", "#"+itoa(d3.ID)+": already discarded", `action="/ui/dead-letters/replay"`)
	if b.deadLetter(t, d1.ID).State() != outbox.DeadLetterOpen {
		t.Fatal("the confirmation page changed something")
	}
	r = b.post(t, Prefix+"dead-letters/replay", url.Values{"id": {itoa(d1.ID), itoa(d2.ID), itoa(d3.ID)}, "back": {back}})
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != back {
		t.Fatalf("replay: %d to %q", r.Code, r.Header.Get("Location"))
	}
	for _, id := range []int64{d1.ID, d2.ID} {
		if st := b.deadLetter(t, id).State(); st != outbox.DeadLetterReplayed {
			t.Errorf("dead letter %d: %s after the replay", id, st)
		}
	}
	b.do(t, http.MethodGet, back, nil).expect(t, http.StatusOK,
		"Dead letter #"+itoa(d1.ID)+" replayed", "Dead letter #"+itoa(d2.ID)+" replayed",
		"Dead letter #"+itoa(d3.ID)+" was already replayed or discarded; nothing changed.")
	// Shown once.
	if r := b.do(t, http.MethodGet, back, nil); strings.Contains(r.Body, "replayed: its event") {
		t.Error("the result was shown twice")
	}
	b.do(t, http.MethodGet, Prefix+"dead-letters/confirm?action=replay", nil).expect(t, http.StatusBadRequest, "No dead letter was selected.")
	b.do(t, http.MethodGet, Prefix+"dead-letters/confirm?action=explode&id=1", nil).expect(t, http.StatusBadRequest)
}

// A discard needs a reason: without one the confirmation comes back with
// the error and nothing changes; with one the dead letter keeps it.
func TestDiscardNeedsAReason(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	dl := b.deadLetterOf(t, "d-1", `{}`, nil, "no")
	b.post(t, Prefix+"dead-letters/discard", url.Values{"id": {itoa(dl.ID)}, "reason": {"  "}}).expect(t,
		http.StatusUnprocessableEntity, "The reason is required", `aria-invalid="true"`)
	b.post(t, Prefix+"dead-letters/discard", url.Values{"id": {itoa(dl.ID)}, "reason": {"a\nb"}}).expect(t,
		http.StatusUnprocessableEntity, "must not contain control characters")
	if b.deadLetter(t, dl.ID).State() != outbox.DeadLetterOpen {
		t.Fatal("a refused discard changed the dead letter")
	}
	r := b.post(t, Prefix+"dead-letters/discard", url.Values{"id": {itoa(dl.ID)}, "reason": {"customer <deleted>"}})
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != "/ui/dead-letters/"+itoa(dl.ID) {
		t.Fatalf("discard: %d to %q", r.Code, r.Header.Get("Location"))
	}
	if got := b.deadLetter(t, dl.ID); got.State() != outbox.DeadLetterDiscarded || got.DiscardReason != "customer <deleted>" {
		t.Fatalf("after the discard: %s %q", got.State(), got.DiscardReason)
	}
	b.do(t, http.MethodGet, r.Header.Get("Location"), nil).expect(t, http.StatusOK,
		"discarded, with your reason kept", "<q>customer &lt;deleted&gt;</q>")
}

// Every state-changing request needs the session's CSRF token and must
// not come from another origin; a refused one changes nothing.
func TestActionsRefuseCSRF(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	dl := b.deadLetterOf(t, "c-1", `{}`, nil, "no")
	id := itoa(dl.ID)
	for name, r := range map[string]resp{
		"no token":    b.do(t, http.MethodPost, Prefix+"dead-letters/replay", url.Values{"id": {id}}),
		"wrong token": b.do(t, http.MethodPost, Prefix+"dead-letters/replay", url.Values{"id": {id}, "csrf": {"x" + b.csrf}}),
		"cross-site": b.do(t, http.MethodPost, Prefix+"dead-letters/replay", url.Values{"id": {id}, "csrf": {b.csrf}},
			"Sec-Fetch-Site", "cross-site"),
		"other origin": b.do(t, http.MethodPost, Prefix+"dead-letters/discard", url.Values{"id": {id}, "csrf": {b.csrf}, "reason": {"x"}},
			"Origin", "https://evil.example"),
		"logout without token": b.do(t, http.MethodPost, Prefix+"logout", url.Values{}),
	} {
		if r.Code != http.StatusForbidden || !strings.Contains(r.Body, "This request was refused") {
			t.Errorf("%s: %d, want 403\n%s", name, r.Code, r.Body)
		}
	}
	if st := b.deadLetter(t, dl.ID).State(); st != outbox.DeadLetterOpen {
		t.Fatalf("a refused request left the dead letter %s", st)
	}
	if r := b.do(t, http.MethodGet, Prefix, nil); r.Code != http.StatusOK {
		t.Fatalf("the refused logout ended the session: %d", r.Code)
	}
	if r := b.do(t, http.MethodGet, Prefix+"dead-letters/replay", nil); r.Code != http.StatusNotFound {
		t.Errorf("GET of an action: %d, want 404 (actions are POST only)", r.Code)
	}
}
