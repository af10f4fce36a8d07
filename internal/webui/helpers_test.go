package webui

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/internal/ordersvc/sqliteorders"
	"github.com/heraldhq/herald/internal/testdb"
	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "s3cret-admin-token"

// bundle is a UI on a real orders service and outbox on a fresh SQLite
// database.
type bundle struct {
	ui     *Handler
	driver *sqlitestore.Driver
	svc    *ordersvc.Service
	client *outbox.Client[*sql.Tx]
	cookie *http.Cookie // the session, after login
	csrf   string
}

func setup(t *testing.T, opts ...func(*Config)) *bundle {
	t.Helper()
	ctx := context.Background()
	driver, err := sqlitestore.Open(testdb.SQLitePath(t), sqlitestore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		t.Fatal(err)
	}
	if err := driver.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	client := outbox.NewClient[*sql.Tx](driver)
	store := sqliteorders.New(driver.DB(), client)
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = store.Close()
		_ = driver.Close()
	})
	b := &bundle{driver: driver, svc: ordersvc.New(store, ordersvc.Config{}), client: client}
	cfg := Config{Orders: b.svc, Outbox: driver, Events: driver, AdminToken: testToken}
	for _, o := range opts {
		o(&cfg)
	}
	b.ui = New(cfg)
	return b
}

// resp is a recorded response.
type resp struct {
	Code   int
	Header http.Header
	Body   string
}

func (r resp) expect(t *testing.T, code int, contains ...string) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("status %d, want %d; body:\n%s", r.Code, code, r.Body)
	}
	for _, c := range contains {
		if !strings.Contains(r.Body, c) {
			t.Errorf("body lacks %q:\n%s", c, r.Body)
		}
	}
}

// do sends a request with the bundle's session cookie, if any; headers
// come as name, value pairs.
func (b *bundle) do(t *testing.T, method, target string, form url.Values, headers ...string) resp {
	t.Helper()
	r := newRequest(method, target, form)
	if b.cookie != nil {
		r.AddCookie(b.cookie)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return b.serve(r)
}

func (b *bundle) serve(r *http.Request) resp {
	rec := httptest.NewRecorder()
	b.ui.ServeHTTP(rec, r)
	return resp{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs in with the admin token and keeps the session and its CSRF
// token.
func (b *bundle) login(t *testing.T) {
	t.Helper()
	r := b.do(t, http.MethodPost, Prefix+"login", url.Values{"token": {testToken}, "next": {Prefix}})
	if r.Code != http.StatusSeeOther {
		t.Fatalf("login: status %d: %s", r.Code, r.Body)
	}
	b.cookie = sessionCookie(t, r)
	page := b.do(t, http.MethodGet, Prefix+"dead-letters", nil)
	m := csrfField.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no CSRF field on a page:\n%s", page.Body)
	}
	b.csrf = m[1]
}

func sessionCookie(t *testing.T, r resp) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", cookieName, r.Header.Values("Set-Cookie"))
	return nil
}

// post sends a form with the session's CSRF token, as a browser on the UI's
// own page does.
func (b *bundle) post(t *testing.T, path string, form url.Values) resp {
	t.Helper()
	form.Set("csrf", b.csrf)
	return b.do(t, http.MethodPost, path, form, "Sec-Fetch-Site", "same-origin", "Origin", "http://example.com")
}

// newOrder creates an order of customer with one physical item.
func (b *bundle) newOrder(t *testing.T, customer string) order.Order {
	t.Helper()
	o, err := b.svc.CreateOrder(context.Background(), order.CreateOrder{
		CustomerID: customer, Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p-1", ProductType: order.ProductPhysical, Quantity: 2, UnitPrice: 1999}},
	}, order.RequestOptions{Actor: "api"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// settle claims everything due and gives each event the outcome fn
// chooses, as a relay would after publishing.
func (b *bundle) settle(t *testing.T, fn func(r outbox.Record) outbox.Outcome) {
	t.Helper()
	ctx := context.Background()
	batch, err := b.driver.Claim(ctx, outbox.ClaimParams{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := make([]outbox.Outcome, len(batch.Records()))
	for i, r := range batch.Records() {
		outcomes[i] = fn(r)
	}
	if err := batch.Finish(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
}

// deadLetterOf enqueues an event of aggregate thing/id with payload and
// headers, dead-letters it with errText and returns its dead letter.
func (b *bundle) deadLetterOf(t *testing.T, id, payload string, headers map[string]string, errText string) outbox.DeadLetter {
	t.Helper()
	ctx := context.Background()
	enq, err := b.client.Enqueue(ctx, outbox.Event{AggregateType: "thing", AggregateID: id, Type: "thing.happened",
		Payload: json.RawMessage(payload), Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	b.settle(t, func(r outbox.Record) outbox.Outcome {
		if r.ID == enq[0].ID {
			return outbox.Outcome{Kind: outbox.OutcomeDeadLetter, Error: errText}
		}
		return outbox.Outcome{Kind: outbox.OutcomeRetry, Error: "later", Delay: time.Hour}
	})
	dls, err := b.driver.ListDeadLetters(ctx, outbox.DeadLetterFilter{AggregateType: "thing", AggregateID: id, State: outbox.DeadLetterOpen})
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters of thing/%s: %v, %v", id, dls, err)
	}
	return dls[0]
}

func (b *bundle) deadLetter(t *testing.T, id int64) outbox.DeadLetter {
	t.Helper()
	dl, err := b.driver.GetDeadLetter(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return dl
}

func newRequest(method, target string, form url.Values) *http.Request {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequestWithContext(context.Background(), method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return r
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// openOf returns the one open dead letter of order id.
func (b *bundle) openOf(t *testing.T, id string) outbox.DeadLetter {
	t.Helper()
	dls, err := b.driver.ListDeadLetters(context.Background(), outbox.DeadLetterFilter{AggregateType: "order", AggregateID: id, State: outbox.DeadLetterOpen})
	if err != nil || len(dls) != 1 {
		t.Fatalf("open dead letters of order %s: %+v, %v", id, dls, err)
	}
	return dls[0]
}

// confirmPayment pays o in full.
func (b *bundle) confirmPayment(t *testing.T, o order.Order) order.Order {
	t.Helper()
	o, err := b.svc.ConfirmPayment(context.Background(), o.ID, order.ConfirmPayment{PaymentID: "pay-1", Amount: o.TotalAmount, Currency: o.Currency},
		order.RequestOptions{Actor: "api"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}
