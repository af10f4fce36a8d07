package webui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// Page and selection sizes of the dead-letter pages.
const (
	deadLettersPage = 50
	// maxSelection bounds the dead letters one confirmation acts on.
	maxSelection = 100
	// historyLimit bounds the rows read for a dead letter's history.
	historyLimit = 1000
)

// filterField names the fields of a dead-letter filter as the list's form
// does.
var filterField = map[string]string{
	"State": "state", "AggregateType": "aggregate_type", "AggregateID": "aggregate_id",
	"EventType": "event_type", "ErrorContains": "error", "AfterID": "after",
}

type deadLettersData struct {
	Filter  outbox.DeadLetterFilter
	Errors  map[string]string // form field → what is wrong
	Rows    []outbox.DeadLetter
	Next    string // the next page's URL, "" on the last
	Query   string // this page's URL, to come back to after an action
	States  []outbox.DeadLetterState
	AnyOpen bool
}

func (h *Handler) deadLetters(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := outbox.DeadLetterFilter{
		State:         outbox.DeadLetterState(q.Get("state")),
		AggregateType: q.Get("aggregate_type"),
		AggregateID:   q.Get("aggregate_id"),
		EventType:     q.Get("event_type"),
		ErrorContains: q.Get("error"),
	}
	if f.State == "" {
		f.State = outbox.DeadLetterOpen
	}
	d := deadLettersData{Filter: f, Errors: map[string]string{}, Query: r.URL.RequestURI(),
		States: []outbox.DeadLetterState{outbox.DeadLetterOpen, outbox.DeadLetterReplayed, outbox.DeadLetterDiscarded, outbox.DeadLetterAll}}
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			d.Errors["after"] = "must be a dead letter's id"
		}
		f.AfterID = n
	}
	if fe, ok := errors.AsType[*outbox.FilterError](f.Validate()); ok {
		for _, e := range fe.Fields {
			d.Errors[filterField[e.Field]] = e.Message
		}
	}
	if len(d.Errors) > 0 {
		h.render(w, r, http.StatusBadRequest, "deadletters", s, d)
		return
	}
	f.Limit = deadLettersPage + 1
	rows, err := h.cfg.Outbox.ListDeadLetters(r.Context(), f)
	if err != nil {
		h.internal(w, r, s, "list the dead letters", err)
		return
	}
	if len(rows) > deadLettersPage {
		rows = rows[:deadLettersPage]
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("after", strconv.FormatInt(rows[len(rows)-1].ID, 10))
		d.Next = Prefix + "dead-letters?" + next.Encode()
	}
	d.Rows = rows
	d.AnyOpen = slices.ContainsFunc(rows, func(dl outbox.DeadLetter) bool { return dl.State() == outbox.DeadLetterOpen })
	h.render(w, r, http.StatusOK, "deadletters", s, d)
}

type deadLetterData struct {
	DL       outbox.DeadLetter
	Open     bool
	History  []outbox.DeadLetter // the event's other dead letters
	Parked   []outbox.PendingEvent
	Behind   bool // Events is set: the parked list means something
	MoveOn   bool
	OrderURL string // the order's timeline, when the aggregate is an order
}

func (h *Handler) deadLetter(w http.ResponseWriter, r *http.Request, s *session) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		h.fail(w, r, s, http.StatusNotFound, "There is no dead letter "+shorten(r.PathValue("id"), 40)+".")
		return
	}
	dl, err := h.cfg.Outbox.GetDeadLetter(r.Context(), id)
	if errors.Is(err, outbox.ErrNotFound) {
		h.fail(w, r, s, http.StatusNotFound, fmt.Sprintf("There is no dead letter %d.", id))
		return
	}
	if err != nil {
		h.internal(w, r, s, "read the dead letter", err)
		return
	}
	d := deadLetterData{DL: dl, Open: dl.State() == outbox.DeadLetterOpen, MoveOn: h.cfg.MoveOnPastDeadLetters}
	if dl.AggregateType == h.cfg.AggregateType {
		d.OrderURL = Prefix + "orders/" + url.PathEscape(dl.AggregateID)
	}
	same, err := h.cfg.Outbox.ListDeadLetters(r.Context(), outbox.DeadLetterFilter{
		State: outbox.DeadLetterAll, AggregateType: dl.AggregateType, AggregateID: dl.AggregateID, Limit: historyLimit,
	})
	if err != nil && !errors.Is(err, outbox.ErrInvalidFilter) { // names with control characters: no history
		h.internal(w, r, s, "read the dead letter's history", err)
		return
	}
	for _, o := range same {
		if o.EventID == dl.EventID && o.ID != dl.ID {
			d.History = append(d.History, o)
		}
	}
	if h.cfg.Events != nil {
		d.Behind = true
		pending, err := h.cfg.Events.PendingEvents(r.Context(), dl.AggregateType, dl.AggregateID, outbox.MaxPendingEvents)
		if err != nil {
			h.internal(w, r, s, "read the events behind the dead letter", err)
			return
		}
		for _, e := range pending {
			if e.Sequence > dl.Sequence {
				d.Parked = append(d.Parked, e)
			}
		}
	}
	h.render(w, r, http.StatusOK, "deadletter", s, d)
}

// Actions on dead letters.
const (
	actionReplay  = "replay"
	actionDiscard = "discard"
)

type confirmData struct {
	Action   string
	Open     []outbox.DeadLetter // what the action will act on
	Skipped  []string            // what it will not, and why
	Back     string
	Reason   string
	Error    string
	MaxLen   int
	Multiple bool
}

// selection reads the ids of a form or query: at most maxSelection.
func selection(vals []string) ([]int64, error) {
	if len(vals) == 0 {
		return nil, errors.New("no dead letter was selected")
	}
	if len(vals) > maxSelection {
		return nil, fmt.Errorf("at most %d dead letters can be selected at once", maxSelection)
	}
	ids := make([]int64, 0, len(vals))
	for _, v := range vals {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("%q is not a dead letter's id", shorten(v, 40))
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// confirm shows what a replay or discard will act on and asks to go on.
func (h *Handler) confirm(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	action := q.Get("action")
	if action != actionReplay && action != actionDiscard {
		h.fail(w, r, s, http.StatusBadRequest, "Choose to replay or to discard the selected dead letters.")
		return
	}
	ids, err := selection(q["id"])
	if err != nil {
		h.fail(w, r, s, http.StatusBadRequest, capitalize(err.Error())+".")
		return
	}
	d, ok := h.confirmData(w, r, s, action, ids, safeNext(q.Get("back")))
	if !ok {
		return
	}
	h.renderTitled(w, r, http.StatusOK, "confirm", confirmTitle(action, len(d.Open)), s, d)
}

func confirmTitle(action string, n int) string {
	what := "dead letter"
	if n != 1 {
		what = strconv.Itoa(n) + " dead letters"
	}
	if action == actionReplay {
		return "Replay " + what + "?"
	}
	return "Discard " + what + "?"
}

// confirmData reads the selected dead letters; it writes the error page
// and returns false when it cannot.
func (h *Handler) confirmData(w http.ResponseWriter, r *http.Request, s *session, action string, ids []int64, back string) (confirmData, bool) {
	d := confirmData{Action: action, Back: back, MaxLen: order.MaxReasonLen, Multiple: len(ids) > 1}
	for _, id := range ids {
		dl, err := h.cfg.Outbox.GetDeadLetter(r.Context(), id)
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			d.Skipped = append(d.Skipped, fmt.Sprintf("#%d: no such dead letter", id))
		case err != nil:
			h.internal(w, r, s, "read the selected dead letters", err)
			return d, false
		case dl.State() != outbox.DeadLetterOpen:
			d.Skipped = append(d.Skipped, fmt.Sprintf("#%d: already %s", id, dl.State()))
		default:
			d.Open = append(d.Open, dl)
		}
	}
	return d, true
}

// replay replays the posted dead letters and says at once what happened.
func (h *Handler) replay(w http.ResponseWriter, r *http.Request, s *session) {
	ids, err := selection(r.PostForm["id"])
	if err != nil {
		h.fail(w, r, s, http.StatusBadRequest, capitalize(err.Error())+".")
		return
	}
	for _, id := range ids {
		err := h.cfg.Outbox.ReplayDeadLetter(r.Context(), id)
		if err == nil {
			h.log.InfoContext(r.Context(), "dead letter replayed", "id", id, "actor", "admin", "via", "ui")
		}
		h.report(r, s, id, "replayed: its event is back in the outbox and is published next, in its aggregate's order", err)
	}
	h.afterAction(w, r, ids)
}

// discard resolves the posted dead letters without publishing them.
func (h *Handler) discard(w http.ResponseWriter, r *http.Request, s *session) {
	ids, err := selection(r.PostForm["id"])
	if err != nil {
		h.fail(w, r, s, http.StatusBadRequest, capitalize(err.Error())+".")
		return
	}
	reason := r.PostFormValue("reason")
	if msg := checkReason(reason); msg != "" {
		d, ok := h.confirmData(w, r, s, actionDiscard, ids, safeNext(r.PostFormValue("back")))
		if !ok {
			return
		}
		d.Reason, d.Error = reason, "The reason "+msg+"."
		h.renderTitled(w, r, http.StatusUnprocessableEntity, "confirm", confirmTitle(actionDiscard, len(d.Open)), s, d)
		return
	}
	for _, id := range ids {
		err := h.cfg.Outbox.DiscardDeadLetter(r.Context(), id, reason)
		if err == nil {
			h.log.InfoContext(r.Context(), "dead letter discarded", "id", id, "actor", "admin", "via", "ui", "reason", reason)
		}
		h.report(r, s, id, "discarded, with your reason kept: the aggregate's later events flow again", err)
	}
	h.afterAction(w, r, ids)
}

// report adds the outcome of an action on dead letter id to the session's
// messages.
func (h *Handler) report(r *http.Request, s *session, id int64, done string, err error) {
	switch {
	case err == nil:
		s.addFlash("ok", fmt.Sprintf("Dead letter #%d %s.", id, done))
	case errors.Is(err, outbox.ErrNotFound):
		s.addFlash("error", fmt.Sprintf("Dead letter #%d does not exist.", id))
	case errors.Is(err, outbox.ErrAlreadyResolved):
		s.addFlash("error", fmt.Sprintf("Dead letter #%d was already replayed or discarded; nothing changed.", id))
	default:
		h.log.ErrorContext(r.Context(), "webui: dead-letter action", "id", id, "err", err)
		s.addFlash("error", fmt.Sprintf("Dead letter #%d: the action failed (the server's log says why); nothing changed.", id))
	}
}

// afterAction sends the browser to a page that shows the result: the dead
// letter acted on, or the page the selection came from.
func (h *Handler) afterAction(w http.ResponseWriter, r *http.Request, ids []int64) {
	to := safeNext(r.PostFormValue("back"))
	if len(ids) == 1 && to == Prefix {
		to = Prefix + "dead-letters/" + strconv.FormatInt(ids[0], 10)
	}
	http.Redirect(w, r, to, http.StatusSeeOther) //nolint:gosec // to passed safeNext: a path of the UI
}

// checkReason says what is wrong with a discard reason, "" if nothing.
func checkReason(reason string) string {
	switch {
	case strings.TrimSpace(reason) == "":
		return "is required: say why the event is dropped"
	case !utf8.ValidString(reason):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(reason) > order.MaxReasonLen:
		return "must be at most " + strconv.Itoa(order.MaxReasonLen) + " characters"
	case strings.ContainsFunc(reason, unicode.IsControl):
		return "must not contain control characters (line breaks among them)"
	}
	return ""
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
