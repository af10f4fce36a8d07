package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/order"
)

const (
	apiToken   = "api-secret-token"
	adminToken = "admin-secret-token"
)

func withTokens(api, admin string) func(*Config) {
	return func(c *Config) { c.APIToken, c.AdminToken = api, admin }
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, withTokens(apiToken, adminToken))
	for _, tc := range []struct {
		name, method, path, auth string
		body                     any
		status                   int
		code                     string // problem code; "" for success
	}{
		{"order route without token", "GET", "/api/v1/orders", "", nil, 401, order.EUNAUTHORIZED},
		{"order route with wrong token", "GET", "/api/v1/orders", "Bearer nope", nil, 401, order.EUNAUTHORIZED},
		{"order route with basic auth", "GET", "/api/v1/orders", "Basic " + apiToken, nil, 401, order.EUNAUTHORIZED},
		{"order route with empty bearer", "GET", "/api/v1/orders", "Bearer ", nil, 401, order.EUNAUTHORIZED},
		{"order route with token prefix", "GET", "/api/v1/orders", "Bearer " + apiToken[:5], nil, 401, order.EUNAUTHORIZED},
		{"order route with API token", "GET", "/api/v1/orders", "Bearer " + apiToken, nil, 200, ""},
		{"order route with lower-case scheme", "GET", "/api/v1/orders", "bearer " + apiToken, nil, 200, ""},
		{"order route with admin token", "GET", "/api/v1/orders", "Bearer " + adminToken, nil, 200, ""},
		{"admin route without token", "GET", "/api/v1/outbox/stats", "", nil, 401, order.EUNAUTHORIZED},
		{"admin route with API token", "GET", "/api/v1/outbox/stats", "Bearer " + apiToken, nil, 403, order.EFORBIDDEN},
		{"admin POST with API token", "POST", "/api/v1/outbox/dlq/replay", "Bearer " + apiToken, map[string]any{"all": true}, 403, order.EFORBIDDEN},
		{"admin route with admin token", "GET", "/api/v1/outbox/stats", "Bearer " + adminToken, nil, 200, ""},
		{"create without token", "POST", "/api/v1/orders", "", createBody, 401, order.EUNAUTHORIZED},
		{"healthz is open", "GET", "/healthz", "", nil, 200, ""},
		{"readyz is open", "GET", "/readyz", "", nil, 200, ""},
		{"openapi is open", "GET", "/openapi.json", "", nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.state(t)
			var hdr []string
			if tc.auth != "" {
				hdr = []string{"Authorization", tc.auth}
			}
			r := b.do(t, req{method: tc.method, path: tc.path, body: tc.body, headers: hdr})
			if tc.code == "" {
				if r.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", r.Code, tc.status, r.Body)
				}
				return
			}
			r.problem(t, tc.status, tc.code, tc.path)
			if tc.status == 401 && r.Header.Get("WWW-Authenticate") != `Bearer realm="herald"` {
				t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
			}
			b.unchanged(t, before)
		})
	}
}

// createdBy creates an order with the given token and returns the actor
// recorded on its creation's audit row.
func createdBy(t *testing.T, b *testBundle, token string) string {
	t.Helper()
	var hdr []string
	if token != "" {
		hdr = []string{"Authorization", "Bearer " + token}
	}
	var o order.Order
	b.do(t, req{method: "POST", path: "/api/v1/orders", body: createBody, headers: hdr}).decode(t, 201, &o)
	var ts ListTransitionsResponse
	b.do(t, req{method: "GET", path: orderPath(o) + "/transitions", headers: hdr}).decode(t, 200, &ts)
	if len(ts.Transitions) != 1 {
		t.Fatalf("%d transitions, want 1", len(ts.Transitions))
	}
	return ts.Transitions[0].Actor
}

func TestAuthActor(t *testing.T) {
	t.Parallel()
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTokens(apiToken, adminToken))
		if got := createdBy(t, b, apiToken); got != ActorAPI {
			t.Errorf("actor %q, want %q", got, ActorAPI)
		}
		if got := createdBy(t, b, adminToken); got != ActorAdmin {
			t.Errorf("actor %q, want %q", got, ActorAdmin)
		}
	})
	t.Run("no tokens", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if got := createdBy(t, b, ""); got != ActorAnonymous {
			t.Errorf("actor %q, want %q", got, ActorAnonymous)
		}
		// Without tokens a stray Authorization header changes nothing.
		if got := createdBy(t, b, "whatever"); got != ActorAnonymous {
			t.Errorf("actor %q, want %q", got, ActorAnonymous)
		}
		r := b.do(t, req{method: "GET", path: "/api/v1/outbox/stats"})
		if r.Code != 200 {
			t.Errorf("stats without tokens: %d %s", r.Code, r.Body)
		}
	})
	t.Run("same token for both", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTokens("shared", "shared"))
		if got := createdBy(t, b, "shared"); got != ActorAdmin {
			t.Errorf("actor %q, want %q", got, ActorAdmin)
		}
	})
}

func TestAuthOneTokenOnly(t *testing.T) {
	t.Parallel()
	t.Run("API token only closes the admin routes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTokens(apiToken, ""))
		b.do(t, req{method: "GET", path: "/api/v1/outbox/stats"}).problem(t, 401, order.EUNAUTHORIZED, "/api/v1/outbox/stats")
		b.do(t, req{method: "GET", path: "/api/v1/outbox/stats", headers: []string{"Authorization", "Bearer " + apiToken}}).
			problem(t, 403, order.EFORBIDDEN, "/api/v1/outbox/stats")
		// An empty bearer must not match the unset admin token.
		b.do(t, req{method: "GET", path: "/api/v1/outbox/stats", headers: []string{"Authorization", "Bearer"}}).
			problem(t, 401, order.EUNAUTHORIZED, "/api/v1/outbox/stats")
		if r := b.do(t, req{method: "GET", path: "/api/v1/orders", headers: []string{"Authorization", "Bearer " + apiToken}}); r.Code != 200 {
			t.Errorf("orders with API token: %d", r.Code)
		}
	})
	t.Run("admin token only", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withTokens("", adminToken))
		b.do(t, req{method: "GET", path: "/api/v1/orders"}).problem(t, 401, order.EUNAUTHORIZED, "/api/v1/orders")
		if r := b.do(t, req{method: "GET", path: "/api/v1/orders", headers: []string{"Authorization", "Bearer " + adminToken}}); r.Code != 200 {
			t.Errorf("orders with admin token: %d", r.Code)
		}
	})
}

func TestCheckListenAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr      string
		tokensSet bool
		wantErr   error // nil for success
		badAddr   bool
	}{
		{"127.0.0.1:8080", false, nil, false},
		{"127.1.2.3:8080", false, nil, false},
		{"localhost:8080", false, nil, false},
		{"LOCALHOST:80", false, nil, false},
		{"[::1]:8080", false, nil, false},
		{"[::ffff:127.0.0.1]:8080", false, nil, false},
		{"0.0.0.0:8080", false, ErrPublicWithoutTokens, false},
		{":8080", false, ErrPublicWithoutTokens, false},
		{"[::]:8080", false, ErrPublicWithoutTokens, false},
		{"192.168.1.10:8080", false, ErrPublicWithoutTokens, false},
		{"example.com:8080", false, ErrPublicWithoutTokens, false},
		{"0.0.0.0:8080", true, nil, false},
		{":8080", true, nil, false},
		{"no-port", false, nil, true},
		{"no-port", true, nil, true},
	} {
		err := CheckListenAddr(tc.addr, tc.tokensSet)
		switch {
		case tc.badAddr:
			if err == nil || errors.Is(err, ErrPublicWithoutTokens) {
				t.Errorf("CheckListenAddr(%q, %v) = %v, want an address error", tc.addr, tc.tokensSet, err)
			}
		case tc.wantErr == nil:
			if err != nil {
				t.Errorf("CheckListenAddr(%q, %v) = %v, want nil", tc.addr, tc.tokensSet, err)
			}
		default:
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("CheckListenAddr(%q, %v) = %v, want %v", tc.addr, tc.tokensSet, err, tc.wantErr)
			}
		}
	}
	err := CheckListenAddr("0.0.0.0:8080", false)
	want := `httpapi: refusing to listen on a non-loopback address without tokens: "0.0.0.0:8080" (0.0.0.0) is ` +
		`reachable from other machines and no token is set, so anyone could create orders and replay dead letters. ` +
		`Set --api-token and --admin-token (HERALD_API_TOKEN, HERALD_ADMIN_TOKEN), or listen on 127.0.0.1`
	if err == nil || err.Error() != want {
		t.Errorf("message:\n%v\nwant\n%s", err, want)
	}
}

func TestAuthenticatorActor(t *testing.T) {
	t.Parallel()
	a := newAuthenticator(apiToken, adminToken)
	for header, want := range map[string]string{
		"":                           "",
		"Bearer " + apiToken:         ActorAPI,
		"Bearer " + adminToken:       ActorAdmin,
		"Bearer  " + adminToken:      ActorAdmin, // extra space after the scheme
		"Bearer " + adminToken + "x": "",
		"Token " + adminToken:        "",
		adminToken:                   "",
	} {
		r := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		if got := a.actor(r); got != want {
			t.Errorf("actor(%q) = %q, want %q", header, got, want)
		}
	}
}
