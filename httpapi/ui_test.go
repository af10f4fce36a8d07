package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/webui"
)

// With Config.UI set the API serves the operator UI at /ui/, behind the
// admin token's login, and / redirects there; without it / stays a 404.
func TestUIMountedAtUI(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AdminToken, c.UI = "adm", &webui.Config{} })
	r := b.do(t, req{method: http.MethodGet, path: "/"})
	if r.Code != http.StatusFound || r.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET /: %d to %q, want 302 to /ui/", r.Code, r.Header.Get("Location"))
	}
	r = b.do(t, req{method: http.MethodGet, path: "/ui/"})
	if r.Code != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ui/login") {
		t.Fatalf("GET /ui/ without a session: %d to %q, want the login form", r.Code, r.Header.Get("Location"))
	}
	r = b.do(t, req{method: http.MethodGet, path: "/ui/login"})
	if r.Code != http.StatusOK || !strings.Contains(string(r.Body), "Admin token") ||
		r.Header.Get("X-Request-Id") == "" || !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /ui/login: %d %v\n%s", r.Code, r.Header, r.Body)
	}
	if !strings.Contains(b.logs.String(), `"path":"/ui/login"`) {
		t.Error("UI requests are not in the access log")
	}
	// The UI does not open the API: its routes still want the bearer token.
	if r := b.do(t, req{method: http.MethodGet, path: "/api/v1/outbox/stats"}); r.Code != http.StatusUnauthorized {
		t.Errorf("stats without a token: %d", r.Code)
	}

	plain := setup(t)
	plain.do(t, req{method: http.MethodGet, path: "/"}).problem(t, http.StatusNotFound, "not_found", "/")
	plain.do(t, req{method: http.MethodGet, path: "/ui/"}).problem(t, http.StatusNotFound, "not_found", "/ui/")
}
