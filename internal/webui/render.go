package webui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// pageNames are the templates in templates/, each rendered inside
// layout.html, with their titles.
var pageNames = map[string]string{
	"login":       "Log in",
	"overview":    "Overview",
	"deadletters": "Dead letters",
	"deadletter":  "Dead letter",
	"confirm":     "Confirm",
	"orders":      "Orders",
	"order":       "Order",
	"error":       "Error",
}

var funcs = template.FuncMap{
	"when":     formatTime,
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"ago":      ago,
	"short":    shorten,
	"pretty":   prettyJSON,
	"duration": formatDuration,
	"prefix":   func() string { return Prefix },
	"slug":     func(s string) string { return strings.ReplaceAll(s, " ", "-") },
	"count":    count,
}

func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// pageData is what every page's template gets.
type pageData struct {
	Title     string
	Nav       string // the page's menu entry: overview, dead-letters, orders
	CSRF      string // the session's form token; "" without a session
	LoggedIn  bool
	CanLogout bool // a session that a login made (not the open UI's)
	Flash     []flash
	Data      any
}

// navOf is the menu entry a page belongs to.
func navOf(name string) string {
	switch name {
	case "deadletters", "deadletter", "confirm":
		return "dead-letters"
	case "orders", "order":
		return "orders"
	}
	return name
}

// render writes page name with data; s may be nil (the login page).
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data any) {
	h.renderTitled(w, r, status, name, pageNames[name], s, data)
}

func (h *Handler) renderTitled(w http.ResponseWriter, r *http.Request, status int, name, title string, s *session, data any) {
	pd := pageData{Title: title, Nav: navOf(name), Data: data}
	if s != nil {
		pd.CSRF, pd.LoggedIn, pd.CanLogout, pd.Flash = s.csrf, true, !h.cfg.Open, s.takeFlash()
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", pd); err != nil {
		h.log.ErrorContext(r.Context(), "webui: render", "page", name, "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// errorData is the error page's.
type errorData struct {
	Status  int
	Message string
}

// fail renders the error page with a message for the operator.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	h.renderTitled(w, r, status, "error", http.StatusText(status), s, errorData{Status: status, Message: msg})
}

// internal logs err and renders a 500 page that does not show it.
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, s *session, what string, err error) {
	h.log.ErrorContext(r.Context(), "webui: "+what, "err", err)
	h.fail(w, r, s, http.StatusInternalServerError, "Herald could not "+what+". The server's log says why.")
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	h.fail(w, r, nil, http.StatusNotFound, "There is no page at "+shorten(r.URL.Path, 200)+".")
}

// formatTime is t in UTC to the second, "—" when zero.
func formatTime(t any) string {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v != nil {
			tt = *v
		}
	}
	if tt.IsZero() {
		return "—"
	}
	return tt.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago is how long before now t was, rounded for a person.
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	if d < time.Second {
		return "just now"
	}
	return formatDuration(d) + " ago"
}

// formatDuration rounds d to what a person reads: 850ms, 12s, 3m 5s, 2h 4m.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// shorten cuts s to n characters, marking the cut.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// prettyJSON indents a JSON document for reading; other text is shown as
// it is. html/template escapes the result like any other string.
func prettyJSON(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return strings.TrimSpace(buf.String())
}

// count is n with noun, in the plural unless n is 1: "1 event", "3 events".
func count(n any, noun string) string {
	s := fmt.Sprint(n)
	if s == "1" {
		return s + " " + noun
	}
	return s + " " + noun + "s"
}
