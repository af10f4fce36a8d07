package webui

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/outbox"
)

// Orders are found by customer (listed) or by id (straight to the
// timeline); a malformed id is refused with a hint.
func TestOrderSearch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	o1 := b.newOrder(t, "c-search")
	b.newOrder(t, "c-other")
	r := b.do(t, http.MethodGet, Prefix+"orders?customer=c-search", nil)
	r.expect(t, http.StatusOK, "Orders of customer <code>c-search</code>", o1.ID.String())
	if strings.Contains(r.Body, "c-other") {
		t.Error("the customer search lists another customer's order")
	}
	b.do(t, http.MethodGet, Prefix+"orders", nil).expect(t, http.StatusOK, "Newest orders", "c-search", "c-other")
	r = b.do(t, http.MethodGet, Prefix+"orders?id=+"+o1.ID.String()+"+", nil)
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != Prefix+"orders/"+o1.ID.String() {
		t.Fatalf("search by id: %d to %q", r.Code, r.Header.Get("Location"))
	}
	b.do(t, http.MethodGet, Prefix+"orders?id=nope", nil).expect(t, http.StatusBadRequest, "An order id is a UUID")
	b.do(t, http.MethodGet, Prefix+"orders/"+uuid.NewString(), nil).expect(t, http.StatusNotFound, "There is no order")
	b.do(t, http.MethodGet, Prefix+"orders/nope", nil).expect(t, http.StatusNotFound)
}

// An order's timeline puts each transition beside its event with the
// event's state: published once gone from the outbox, dead-lettered while
// its dead letter is open, parked behind it, in retry after a failure, and
// pending; the payment confirmation's own event has no transition.
func TestOrderTimeline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	o := b.newOrder(t, "c-tl")
	published := b.newOrder(t, "c-tl")
	b.settle(t, func(r outbox.Record) outbox.Outcome { // order.created of both
		if r.AggregateID == published.ID.String() {
			return outbox.Outcome{Kind: outbox.OutcomePublished}
		}
		return outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: "rejected <by> broker"}
	})
	b.confirmPayment(t, o)
	b.confirmPayment(t, published)
	b.settle(t, func(r outbox.Record) outbox.Outcome { // published's order.payment_confirmed
		return outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "timeout", Delay: 1e12}
	})

	states := func(body string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`<span class="state state-[^"]+">([^<]+)</span>`).FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	r := b.do(t, http.MethodGet, Prefix+"orders/"+o.ID.String(), nil)
	r.expect(t, http.StatusOK, "∅ → <strong>pending</strong>", "pending → <strong>payment_confirmed</strong>",
		"order.created", "order.payment_confirmed", "line_item.status_changed", "no transition",
		"rejected &lt;by&gt; broker", "dead letter #")
	if got, want := strings.Join(states(r.Body), ","), "dead-lettered,parked,parked,parked"; got != want {
		t.Errorf("states of the dead-lettered order's events: %s, want %s", got, want)
	}
	r = b.do(t, http.MethodGet, Prefix+"orders/"+published.ID.String(), nil)
	if got, want := strings.Join(states(r.Body), ","), "published,in retry,pending,pending"; got != want {
		t.Errorf("states of the flowing order's events: %s, want %s\n%s", got, want, r.Body)
	}
	r.expect(t, http.StatusOK, "next attempt")

	// Discarding the dead letter releases the parked events.
	dl := b.openOf(t, o.ID.String())
	if err := b.driver.DiscardDeadLetter(context.Background(), dl.ID, "test"); err != nil {
		t.Fatal(err)
	}
	r = b.do(t, http.MethodGet, Prefix+"orders/"+o.ID.String(), nil)
	if got, want := strings.Join(states(r.Body), ","), "discarded,pending,pending,pending"; got != want {
		t.Errorf("after the discard: %s, want %s", got, want)
	}
}

// Without an EventReader the timeline cannot tell a pending event from a
// published one, and says so instead of calling it published.
func TestOrderTimelineWithoutEventReader(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.Events = nil })
	b.login(t)
	o := b.newOrder(t, "c-noev")
	r := b.do(t, http.MethodGet, Prefix+"orders/"+o.ID.String(), nil)
	r.expect(t, http.StatusOK, "cannot read pending events", `<span class="state state-unknown">unknown</span>`)
	if strings.Contains(r.Body, "state-published") {
		t.Error("a pending event is called published")
	}
}
