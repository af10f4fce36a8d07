// Package webui is Herald's operator web UI, served by herald serve at
// /ui/: the outbox's figures and health (updated live), the dead-letter
// queue with its replay and discard actions, and order timelines that put
// each audit-trail transition beside its event and that event's state.
//
// Pages are html/template documents that read fully without JavaScript; a
// small script (static/app.js) adds the live updates over Server-Sent
// Events and selection helpers. Templates, styles and the script are
// embedded in the binary.
//
// Security: the UI is behind the admin token. A browser cannot send a
// bearer header on navigation, so the login form exchanges the token for a
// server-side session (an HttpOnly, SameSite=Strict cookie, Secure over TLS,
// that expires). Every state-changing request is a POST that must carry the
// session's CSRF token and pass net/http's cross-origin protection
// (Sec-Fetch-Site, Origin). Responses carry a strict Content-Security-Policy
// (no inline script or style) and refuse framing. Login attempts are
// limited per client address. Everything shown is
// escaped by html/template: payloads and error texts are attacker-shaped.
// With no token configured at all the UI is open, as the API is, and
// Herald listens on loopback only (httpapi.CheckListenAddr).
package webui

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// Prefix is where the UI is served.
const Prefix = "/ui/"

// Defaults of Config's zero fields.
const (
	DefaultSessionTTL   = 8 * time.Hour
	DefaultLiveInterval = 2 * time.Second
	// DefaultAggregateType is the orders' aggregate type in the outbox.
	DefaultAggregateType = "order"
)

// maxFormBytes bounds a form post's body.
const maxFormBytes = 64 << 10

// Config configures the UI.
type Config struct {
	// Orders and Outbox are what the pages read and act on. Required.
	Orders order.Service
	Outbox outbox.Admin
	// Events reads an aggregate's events still in the outbox, for order
	// timelines and the events parked behind a dead letter. Both outbox
	// drivers implement it; nil leaves those parts out.
	Events outbox.EventReader
	// Health is the outbox's health verdict with its reasons, as GET
	// /api/v1/outbox/health gives it. Nil judges the outbox's figures alone
	// (outbox.Assess).
	Health func(ctx context.Context) (outbox.Health, error)
	// Live is the in-process relay's activity: the published-per-second
	// chart and the relay workers. Nil when no relay runs in the process.
	Live *Live

	// AdminToken is the token the login form takes. Open, set when no
	// token at all is configured (the API is open too and listens on
	// loopback only), lets everyone in without logging in. With neither,
	// the UI is closed: only an admin token can open it.
	AdminToken string
	Open       bool

	// AggregateType is the orders' aggregate type in the outbox; default
	// DefaultAggregateType.
	AggregateType string
	// MoveOnPastDeadLetters mirrors the relay's setting: events behind a dead
	// letter are then not parked.
	MoveOnPastDeadLetters bool
	SessionTTL            time.Duration // default DefaultSessionTTL
	LiveInterval          time.Duration // between two live updates; default DefaultLiveInterval
	Logger                *slog.Logger  // nil discards
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler is the UI. Mount it at Prefix.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
	logins   *loginLimiter
	csrf     *http.CrossOriginProtection
	static   http.Handler
}

// New returns the UI. It panics when cfg.Orders or cfg.Outbox is nil or
// the embedded templates do not parse.
func New(cfg Config) *Handler {
	if cfg.Orders == nil || cfg.Outbox == nil {
		panic("webui: Config.Orders and Config.Outbox are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.LiveInterval <= 0 {
		cfg.LiveInterval = DefaultLiveInterval
	}
	if cfg.AggregateType == "" {
		cfg.AggregateType = DefaultAggregateType
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		panic("webui: " + err.Error())
	}
	static, _ := fs.Sub(staticFS, "static")
	h := &Handler{
		cfg:      cfg,
		log:      cfg.Logger,
		mux:      http.NewServeMux(),
		pages:    pages,
		sessions: newSessions(cfg.SessionTTL),
		logins:   newLoginLimiter(),
		csrf:     http.NewCrossOriginProtection(),
		static:   http.StripPrefix(Prefix+"static/", http.FileServerFS(static)),
	}
	h.routes()
	return h
}

func (h *Handler) routes() {
	h.mux.HandleFunc("GET "+Prefix+"static/", h.serveStatic)
	h.mux.HandleFunc("GET "+Prefix+"login", h.loginPage)
	h.mux.HandleFunc("POST "+Prefix+"login", h.login)
	h.mux.Handle("POST "+Prefix+"logout", h.action(h.logout))

	h.mux.Handle("GET "+Prefix+"{$}", h.page(h.overview))
	h.mux.Handle("GET "+Prefix+"events", h.page(h.events))
	h.mux.Handle("GET "+Prefix+"dead-letters", h.page(h.deadLetters))
	h.mux.Handle("GET "+Prefix+"dead-letters/confirm", h.page(h.confirm))
	h.mux.Handle("GET "+Prefix+"dead-letters/{id}", h.page(h.deadLetter))
	h.mux.Handle("POST "+Prefix+"dead-letters/replay", h.action(h.replay))
	h.mux.Handle("POST "+Prefix+"dead-letters/discard", h.action(h.discard))
	h.mux.Handle("GET "+Prefix+"orders", h.page(h.orders))
	h.mux.Handle("GET "+Prefix+"orders/{id}", h.page(h.orderTimeline))
}

// contentSecurityPolicy allows the UI's own script, styles and images and
// nothing inline; no page may frame the UI.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// ServeHTTP sets the security headers of every response and serves the
// UI's routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if _, pattern := h.mux.Handler(r); pattern == "" {
		// Unknown path or method: an HTML page, not the mux's plain text.
		h.notFound(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	h.static.ServeHTTP(w, r)
}

// pageFunc serves a page to a logged-in operator.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session)

// page lets a request with a valid session through to fn; one without is
// sent to the login form.
func (h *Handler) page(fn pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s := h.session(w, r)
		if s == nil {
			h.toLogin(w, r)
			return
		}
		fn(w, r, s)
	})
}

// action is page for a POST that changes something: it also refuses a
// cross-origin request and one without the session's CSRF token (403).
func (h *Handler) action(fn pageFunc) http.Handler {
	return h.page(func(w http.ResponseWriter, r *http.Request, s *session) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := h.checkCSRF(r, s); err != nil {
			h.log.WarnContext(r.Context(), "webui: request refused", "path", r.URL.Path, "reason", err.Error())
			h.fail(w, r, s, http.StatusForbidden, "This request was refused: "+err.Error()+
				". Go back, reload the page and try again.")
			return
		}
		fn(w, r, s)
	})
}

// errCSRF is a state-changing request the UI refuses.
var errCSRF = errors.New("it did not come from a page of this Herald (a cross-origin request, or the form's token is missing or stale)")
