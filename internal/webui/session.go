package webui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cookieName is the session cookie's name.
const cookieName = "herald_ui_session"

// maxSessions bounds the sessions kept; beyond it the oldest is dropped.
const maxSessions = 1000

// session is one logged-in browser. Its id is only in the cookie; the
// store keys it by the id's SHA-256, so a lookup's timing says nothing
// useful about a guessed id.
type session struct {
	key     string // hex SHA-256 of the cookie's id
	csrf    string // the token every form of the session carries
	expires time.Time
	created time.Time

	mu    sync.Mutex
	flash []flash // messages for the next page, shown once
}

// flash is a message for the next page the operator sees.
type flash struct {
	Kind string // "ok" or "error"
	Text string
}

func (s *session) addFlash(kind, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flash = append(s.flash, flash{Kind: kind, Text: text})
}

func (s *session) takeFlash() []flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

// sessions are the UI's sessions, in memory: a restart logs everyone out.
type sessions struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]*session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, now: time.Now, m: make(map[string]*session)}
}

// randomToken is 32 random bytes, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// create starts a session and returns it with the id for the cookie.
func (ss *sessions) create() (*session, string) {
	id := randomToken()
	now := ss.now()
	s := &session{key: hashKey(id), csrf: randomToken(), created: now, expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.prune(now)
	if len(ss.m) >= maxSessions {
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(ss.m, oldest.key)
	}
	ss.m[s.key] = s
	return s, id
}

// prune drops expired sessions; ss.mu is held.
func (ss *sessions) prune(now time.Time) {
	for k, s := range ss.m {
		if !now.Before(s.expires) {
			delete(ss.m, k)
		}
	}
}

// get returns the live session of id, or nil.
func (ss *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[hashKey(id)]
	if s == nil {
		return nil
	}
	if !ss.now().Before(s.expires) {
		delete(ss.m, s.key)
		return nil
	}
	return s
}

func (ss *sessions) remove(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, s.key)
}

// session returns the request's session. With the UI open (no token
// configured) a request without one gets a new session, so that its
// forms carry a CSRF token all the same.
func (h *Handler) session(w http.ResponseWriter, r *http.Request) *session {
	if c, err := r.Cookie(cookieName); err == nil {
		if s := h.sessions.get(c.Value); s != nil {
			return s
		}
	}
	if h.cfg.Open {
		return h.startSession(w, r)
	}
	return nil
}

// startSession creates a session and sets its cookie.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request) *session {
	s, id := h.sessions.create()
	//nolint:gosec // Secure when the request came over TLS: herald serve speaks plain HTTP on loopback by default
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    id,
		Path:     strings.TrimSuffix(Prefix, "/"),
		Expires:  s.expires,
		MaxAge:   int(h.cfg.SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	return s
}

// endSession forgets s and expires the cookie.
func (h *Handler) endSession(w http.ResponseWriter, r *http.Request, s *session) {
	h.sessions.remove(s)
	//nolint:gosec // as in startSession; this cookie only expires the session's
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: strings.TrimSuffix(Prefix, "/"), MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// checkCSRF refuses a cross-origin browser request, and one whose form
// lacks the session's token.
func (h *Handler) checkCSRF(r *http.Request, s *session) error {
	if err := h.csrf.Check(r); err != nil {
		return errCSRF
	}
	token := r.PostFormValue("csrf")
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) != 1 {
		return errCSRF
	}
	return nil
}

// adminTokenOK compares token with the admin token in constant time (of
// their SHA-256 digests, so the length does not show either).
func (h *Handler) adminTokenOK(token string) bool {
	if h.cfg.AdminToken == "" || token == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(h.cfg.AdminToken))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// toLogin sends a request without a session to the login form, to come
// back to the page it asked for; a non-GET request (its form would be
// lost) and the event stream get 401.
func (h *Handler) toLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path == Prefix+"events" {
		h.render(w, r, http.StatusUnauthorized, "login", nil, loginData{
			Next: Prefix, Closed: h.closed(), Error: "Your session has ended. Log in again.",
		})
		return
	}
	http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

// closed reports that no admin token is set while the API has tokens: no
// one can log in.
func (h *Handler) closed() bool { return !h.cfg.Open && h.cfg.AdminToken == "" }

// safeNext is next if it is a path of the UI, else the overview: the login
// form must not redirect anywhere else.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(u.Path, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return u.RequestURI()
}

type loginData struct {
	Next   string
	Error  string
	Closed bool
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	next := safeNext(r.URL.Query().Get("next"))
	if h.session(w, r) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // next passed safeNext: a path of the UI

		return
	}
	h.render(w, r, http.StatusOK, "login", nil, loginData{Next: next, Closed: h.closed()})
}

// login exchanges the admin token for a session.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	next := safeNext(r.PostFormValue("next"))
	if err := h.csrf.Check(r); err != nil {
		h.render(w, r, http.StatusForbidden, "login", nil, loginData{Next: next, Closed: h.closed(),
			Error: "This login came from another site and was refused."})
		return
	}
	if h.cfg.Open {
		h.startSession(w, r)
		http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // next passed safeNext: a path of the UI

		return
	}
	if ok, wait := h.logins.allow(r.RemoteAddr); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		h.log.WarnContext(r.Context(), "webui: login refused: too many attempts", "remote", r.RemoteAddr)
		h.render(w, r, http.StatusTooManyRequests, "login", nil, loginData{Next: next, Closed: h.closed(),
			Error: fmt.Sprintf("Too many login attempts from your address. Try again in %d seconds.", secs)})
		return
	}
	if !h.adminTokenOK(r.PostFormValue("token")) {
		h.log.WarnContext(r.Context(), "webui: login refused: wrong token", "remote", r.RemoteAddr)
		h.render(w, r, http.StatusUnauthorized, "login", nil, loginData{Next: next, Closed: h.closed(),
			Error: "That is not the admin token."})
		return
	}
	if c, err := r.Cookie(cookieName); err == nil {
		if old := h.sessions.get(c.Value); old != nil {
			h.sessions.remove(old) // a new id at every login
		}
	}
	h.startSession(w, r)
	h.log.InfoContext(r.Context(), "webui: operator logged in", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // next passed safeNext: a path of the UI
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *session) {
	h.endSession(w, r, s)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}
