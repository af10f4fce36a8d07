package webui

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A page without a session sends the browser to the login form, which
// exchanges the admin token for a session cookie: HttpOnly, SameSite=Strict,
// scoped to the UI, expiring, and Secure only over TLS.
func TestLoginExchangesTheTokenForACookie(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, http.MethodGet, Prefix+"dead-letters?state=all", nil)
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != Prefix+"login?next=%2Fui%2Fdead-letters%3Fstate%3Dall" {
		t.Fatalf("without a session: %d to %q, want 303 to the login form", r.Code, r.Header.Get("Location"))
	}
	b.do(t, http.MethodGet, Prefix+"login?next=%2Fui%2Fdead-letters", nil).expect(t, http.StatusOK,
		`<form method="post" action="/ui/login"`, `type="password"`, `name="next" value="/ui/dead-letters"`)

	wrong := b.do(t, http.MethodPost, Prefix+"login", url.Values{"token": {"guess"}})
	wrong.expect(t, http.StatusUnauthorized, "That is not the admin token.")
	if len(wrong.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("a wrong token got a cookie: %v", wrong.Header.Values("Set-Cookie"))
	}

	r = b.do(t, http.MethodPost, Prefix+"login", url.Values{"token": {testToken}, "next": {"/ui/dead-letters"}})
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != "/ui/dead-letters" {
		t.Fatalf("login: %d to %q", r.Code, r.Header.Get("Location"))
	}
	c := sessionCookie(t, r)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/ui" ||
		c.MaxAge != int(DefaultSessionTTL/time.Second) || len(c.Value) < 40 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, path /ui, expiring", c)
	}
	b.cookie = c
	b.do(t, http.MethodGet, Prefix, nil).expect(t, http.StatusOK, "<h1>Overview</h1>", "Log out")

	// Over TLS the cookie is Secure.
	req := newRequest(http.MethodPost, Prefix+"login", url.Values{"token": {testToken}})
	req.TLS = &tls.ConnectionState{}
	if c := sessionCookie(t, b.serve(req)); !c.Secure {
		t.Errorf("cookie over TLS %+v: want Secure", c)
	}
}

// The login form never redirects off the UI, whatever next says.
func TestLoginRedirectsOnlyIntoTheUI(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"":                           Prefix,
		"/ui/orders?customer=c-1":    "/ui/orders?customer=c-1",
		"https://evil.example/ui/":   Prefix,
		"//evil.example/ui/":         Prefix,
		"/api/v1/outbox/dlq":         Prefix,
		"/ui/\\evil":                 Prefix,
		"javascript:alert(1)//ui/":   Prefix,
		"/ui/dead-letters/3\r\nX: y": Prefix,
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

// A login posted from another site is refused (login CSRF).
func TestLoginFromAnotherSiteIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, http.MethodPost, Prefix+"login", url.Values{"token": {testToken}}, "Sec-Fetch-Site", "cross-site")
	r.expect(t, http.StatusForbidden, "came from another site")
	if len(r.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("a cross-site login got a cookie")
	}
}

// Logging out ends the session on the server: the old cookie no longer
// opens a page. An expired session does not either.
func TestLogoutAndExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	r := b.post(t, Prefix+"logout", url.Values{})
	if r.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", r.Code, r.Body)
	}
	if r := b.do(t, http.MethodGet, Prefix, nil); r.Code != http.StatusSeeOther {
		t.Fatalf("after logout: %d, want the login redirect", r.Code)
	}

	b.login(t)
	b.ui.sessions.now = func() time.Time { return time.Now().Add(DefaultSessionTTL + time.Second) }
	if r := b.do(t, http.MethodGet, Prefix, nil); r.Code != http.StatusSeeOther {
		t.Fatalf("expired session: %d, want the login redirect", r.Code)
	}
}

// Without session, the event stream and a form post get 401, not a redirect.
func TestNoSessionOnStreamAndPost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.do(t, http.MethodGet, Prefix+"events", nil).expect(t, http.StatusUnauthorized, "Log in again")
	b.do(t, http.MethodPost, Prefix+"dead-letters/replay", url.Values{"id": {"1"}}).expect(t, http.StatusUnauthorized)
}

// With no token configured at all (Herald then listens on loopback only)
// the UI is open, as the API is; its forms still carry a CSRF token.
func TestOpenWithoutTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AdminToken, c.Open = "", true })
	r := b.do(t, http.MethodGet, Prefix, nil)
	r.expect(t, http.StatusOK, "<h1>Overview</h1>")
	if strings.Contains(r.Body, "Log out") {
		t.Error("the open UI offers to log out")
	}
	b.cookie = sessionCookie(t, r)
	dl := b.deadLetterOf(t, "open-1", `{}`, nil, "no")
	b.do(t, http.MethodPost, Prefix+"dead-letters/replay", url.Values{"id": {"1"}}).expect(t, http.StatusForbidden)
	m := csrfField.FindStringSubmatch(b.do(t, http.MethodGet, Prefix+"dead-letters/confirm?action=replay&id="+itoa(dl.ID), nil).Body)
	if m == nil {
		t.Fatal("no CSRF token on the open UI's pages")
	}
	b.csrf = m[1]
	if r := b.post(t, Prefix+"dead-letters/replay", url.Values{"id": {itoa(dl.ID)}}); r.Code != http.StatusSeeOther {
		t.Fatalf("replay on the open UI: %d %s", r.Code, r.Body)
	}
}

// With only the API token set, no one can log in: the outbox routes are
// closed to the API token, and there is no admin token to give.
func TestClosedWithoutAdminToken(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AdminToken = "" })
	b.do(t, http.MethodGet, Prefix+"login", nil).expect(t, http.StatusOK, "has no admin token")
	b.do(t, http.MethodPost, Prefix+"login", url.Values{"token": {""}}).expect(t, http.StatusUnauthorized)
}

// Every response, pages, assets and errors alike, carries the strict
// Content-Security-Policy and refuses framing; pages are not cached.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.login(t)
	for _, path := range []string{Prefix, Prefix + "login", Prefix + "static/app.css", Prefix + "static/app.js", Prefix + "nope"} {
		r := b.do(t, http.MethodGet, path, nil)
		h := r.Header
		if csp := h.Get("Content-Security-Policy"); csp != contentSecurityPolicy ||
			!strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Frame-Options %q, X-Content-Type-Options %q", path, h.Get("X-Frame-Options"), h.Get("X-Content-Type-Options"))
		}
		if !strings.HasPrefix(path, Prefix+"static/") && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", path, h.Get("Cache-Control"))
		}
	}
	if r := b.do(t, http.MethodGet, Prefix+"nope", nil); r.Code != http.StatusNotFound ||
		r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("unknown page: %d %q", r.Code, r.Header.Get("Content-Type"))
	}
	r := b.do(t, http.MethodGet, Prefix+"static/app.js", nil)
	if r.Code != http.StatusOK || !strings.Contains(r.Header.Get("Content-Type"), "javascript") || !strings.Contains(r.Body, "EventSource") {
		t.Errorf("app.js: %d %q", r.Code, r.Header.Get("Content-Type"))
	}
}

// Guessing the admin token is slowed down per client address: after
// loginBurst attempts the form answers 429 with Retry-After, even to the
// right token, until the address has waited; other addresses are not held.
func TestLoginIsRateLimitedPerAddress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	b.ui.logins.now = func() time.Time { return now }
	attempt := func(addr, token string) resp {
		req := newRequest(http.MethodPost, Prefix+"login", url.Values{"token": {token}})
		req.RemoteAddr = addr
		return b.serve(req)
	}
	const guesser = "198.51.100.7:40000"
	for i := range loginBurst {
		attempt(guesser, "guess-"+itoa(int64(i))).expect(t, http.StatusUnauthorized, "That is not the admin token.")
	}
	r := attempt("198.51.100.7:40001", testToken) // another port of the same host
	r.expect(t, http.StatusTooManyRequests, "Too many login attempts from your address. Try again in 10 seconds.")
	if r.Header.Get("Retry-After") != "10" || len(r.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("limited login: Retry-After %q, cookies %v; want 10 and none", r.Header.Get("Retry-After"), r.Header.Values("Set-Cookie"))
	}
	if r := attempt("203.0.113.9:5000", testToken); r.Code != http.StatusSeeOther {
		t.Errorf("another address: %d, want 303 (logged in)", r.Code)
	}
	// An IPv6 client is one /64: changing the interface id gains nothing.
	for i := range loginBurst {
		attempt("[2001:db8:1:2::"+itoa(int64(i+1))+"]:443", "guess").expect(t, http.StatusUnauthorized)
	}
	attempt("[2001:db8:1:2::ff]:443", testToken).expect(t, http.StatusTooManyRequests)

	now = now.Add(loginEvery)
	if r := attempt(guesser, testToken); r.Code != http.StatusSeeOther {
		t.Errorf("after waiting %s: %d, want 303", loginEvery, r.Code)
	}
	attempt(guesser, testToken).expect(t, http.StatusTooManyRequests)
}

// The addresses tracked are bounded: idle ones are forgotten, and when
// none is idle new addresses share one budget.
func TestLoginLimiterIsBounded(t *testing.T) {
	t.Parallel()
	l := newLoginLimiter()
	now := time.Now()
	l.now = func() time.Time { return now }
	addr := func(i int) string {
		return "10." + itoa(int64(i>>16&255)) + "." + itoa(int64(i>>8&255)) + "." + itoa(int64(i&255)) + ":1"
	}
	for i := range maxLoginClients {
		l.allow(addr(i))
	}
	// Every budget has one attempt taken: none idle, so the next addresses share one.
	for i := range loginBurst {
		if ok, _ := l.allow(addr(maxLoginClients + i)); !ok {
			t.Fatalf("overflow attempt %d refused, want %d allowed", i, loginBurst)
		}
	}
	if ok, _ := l.allow(addr(maxLoginClients + loginBurst)); ok {
		t.Errorf("a new address past the bound got a budget of its own")
	}
	if len(l.clients) != maxLoginClients+1 {
		t.Errorf("%d addresses tracked, want %d", len(l.clients), maxLoginClients+1)
	}
	// Once the budgets are full again, the idle addresses are forgotten.
	now = now.Add(loginBurst * loginEvery)
	if ok, _ := l.allow(addr(2 * maxLoginClients)); !ok {
		t.Errorf("after the budgets refilled, a new address was refused")
	}
	if len(l.clients) != 1 {
		t.Errorf("%d addresses tracked after pruning, want 1", len(l.clients))
	}
}
