package httpapi

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// Limits of GET /api/v1/outbox/dlq, and of herald dlq list. The page is read
// one row long to tell whether another follows; the drivers cap a read at
// 1000.
const (
	DefaultDeadLettersLimit = 100
	MaxDeadLettersLimit     = 500
)

// DefaultDeadLetterState is the state a list of dead letters shows without
// one (GET /api/v1/outbox/dlq, herald dlq list): those waiting for an
// operator.
const DefaultDeadLetterState = outbox.DeadLetterOpen

// StatsResponse is the body of GET /api/v1/outbox/stats, and what herald
// stats --json prints (without the relay's counts).
type StatsResponse struct {
	Pending         int64      `json:"pending"`           // events waiting in the outbox
	InRetry         int64      `json:"in_retry"`          // of those, events that failed at least once
	OldestPendingAt *time.Time `json:"oldest_pending_at"` // null when nothing is pending
	LagSeconds      float64    `json:"lag_seconds"`       // age of the oldest pending event; 0 when none
	DLQSize         int64      `json:"dlq_size"`          // open dead letters
	Parked          int64      `json:"parked"`            // pending events waiting behind an open dead letter
	// The in-process relay's counts since it started; absent when the
	// server runs no relay.
	Published    *uint64 `json:"published,omitempty"`
	Retried      *uint64 `json:"retried,omitempty"`
	DeadLettered *uint64 `json:"dead_lettered,omitempty"`
}

// NewStats is st as the API shows it at time now.
func NewStats(st outbox.Stats, now time.Time) StatsResponse {
	resp := StatsResponse{Pending: st.Pending, InRetry: st.Retrying, DLQSize: st.DeadLetters, Parked: st.Parked}
	if !st.OldestPending.IsZero() {
		t := st.OldestPending.UTC()
		resp.OldestPendingAt = &t
		// Clocks of the database and this process may differ a little.
		resp.LagSeconds = math.Round(max(0, now.Sub(t).Seconds())*1000) / 1000
	}
	return resp
}

func (s *server) handleStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Outbox.Stats(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := NewStats(st, time.Now())
	if s.cfg.RelayCounters != nil {
		c := s.cfg.RelayCounters()
		resp.Published, resp.Retried, resp.DeadLettered = &c.Published, &c.Retried, &c.DeadLettered
	}
	s.writeJSON(w, r, http.StatusOK, resp)
}

// DeadLetter is a dead letter as the API shows it.
type DeadLetter struct {
	ID             int64             `json:"id"`
	EventID        uuid.UUID         `json:"event_id"`
	AggregateType  string            `json:"aggregate_type"`
	AggregateID    string            `json:"aggregate_id"`
	EventType      string            `json:"event_type"`
	Sequence       int64             `json:"sequence"`
	Payload        json.RawMessage   `json:"payload"`
	Headers        map[string]string `json:"headers"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Error          string            `json:"error"`
	Attempts       int               `json:"attempts"`
	// State is open, replayed or discarded.
	State         outbox.DeadLetterState `json:"state"`
	CreatedAt     time.Time              `json:"created_at"`
	FirstFailedAt time.Time              `json:"first_failed_at,omitzero"`
	MovedAt       time.Time              `json:"moved_at"`
	ReplayedAt    *time.Time             `json:"replayed_at"`
	DiscardedAt   *time.Time             `json:"discarded_at"`
	DiscardReason string                 `json:"discard_reason,omitempty"`
}

// NewDeadLetter is d as the API (and herald dlq --json) shows it.
func NewDeadLetter(d outbox.DeadLetter) DeadLetter {
	payload := d.Payload
	if !json.Valid(payload) { // never stored so; shown as a string rather than break the response
		payload, _ = json.Marshal(string(payload))
	}
	headers := d.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	return DeadLetter{
		ID:             d.ID,
		EventID:        d.EventID,
		AggregateType:  d.AggregateType,
		AggregateID:    d.AggregateID,
		EventType:      d.EventType,
		Sequence:       d.Sequence,
		Payload:        payload,
		Headers:        headers,
		IdempotencyKey: d.IdempotencyKey,
		Error:          d.Error,
		Attempts:       d.Attempts,
		State:          d.State(),
		CreatedAt:      d.CreatedAt,
		FirstFailedAt:  d.FirstFailedAt,
		MovedAt:        d.MovedAt,
		ReplayedAt:     d.ReprocessedAt,
		DiscardedAt:    d.DiscardedAt,
		DiscardReason:  d.DiscardReason,
	}
}

// ListDeadLettersResponse is the body of GET /api/v1/outbox/dlq.
type ListDeadLettersResponse struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	// NextCursor is the after= value of the next page; absent on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

// handleListDeadLetters serves GET /api/v1/outbox/dlq?state=&aggregate_type=
// &aggregate_id=&event_type=&after=&limit=, in id order. Without a state
// (or with an empty one) it lists the open dead letters, as herald dlq list
// does; state=all lists every state.
func (s *server) handleListDeadLetters(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "state", "aggregate_type", "aggregate_id", "event_type", "after", "limit")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The filter's own rules are DeadLetterFilter.Validate's, as for the
	// drivers and the command line; the query adds the types and the page
	// size.
	state := outbox.DeadLetterState(q.values.Get("state"))
	if state == "" {
		state = DefaultDeadLetterState
	}
	f := outbox.DeadLetterFilter{
		State:         state,
		AggregateType: q.values.Get("aggregate_type"),
		AggregateID:   q.values.Get("aggregate_id"),
		EventType:     q.values.Get("event_type"),
		AfterID:       q.int("after", 0, math.MaxInt64, 0),
	}
	limit := int(q.int("limit", 1, MaxDeadLettersLimit, DefaultDeadLettersLimit))
	var badFilter *outbox.FilterError
	if errors.As(f.Validate(), &badFilter) {
		for _, fe := range filterFieldErrors(badFilter) {
			q.fail(fe.Field, "%s", fe.Message)
		}
	}
	if err := q.err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	f.Limit = limit + 1
	dls, err := s.cfg.Outbox.ListDeadLetters(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := ListDeadLettersResponse{DeadLetters: make([]DeadLetter, 0, min(len(dls), limit))}
	if len(dls) > limit {
		dls = dls[:limit]
		resp.NextCursor = strconv.FormatInt(dls[limit-1].ID, 10)
	}
	for _, d := range dls {
		resp.DeadLetters = append(resp.DeadLetters, NewDeadLetter(d))
	}
	s.writeJSON(w, r, http.StatusOK, resp)
}

// handleGetDeadLetter serves GET /api/v1/outbox/dlq/{id}.
func (s *server) handleGetDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := deadLetterID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeDeadLetter(w, r, id)
}

// DiscardRequest is the body of DELETE /api/v1/outbox/dlq/{id}, unless the
// reason comes as the reason query parameter. The reason is required, as
// for herald dlq discard.
type DiscardRequest struct {
	Reason string `json:"reason"`
}

// handleDiscardDeadLetter serves DELETE /api/v1/outbox/dlq/{id}: resolves
// the dead letter without publishing it and returns the kept record. The
// reason, required, comes in the JSON body or the reason query parameter.
func (s *server) handleDiscardDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := deadLetterID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := parseQuery(r, "reason")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := q.err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	var req DiscardRequest
	hasBody, err := decodeBody(w, r, &req, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if q.values.Has("reason") {
		if hasBody {
			s.writeError(w, r, newProblem(eBadRequest, "Give the reason in the body or in the query string, not both."))
			return
		}
		req.Reason = q.values.Get("reason")
	}
	if err := checkDiscardReason(req.Reason); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Outbox.DiscardDeadLetter(r.Context(), id, req.Reason); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "dead letter discarded", "id", id, "actor", actorFrom(r.Context()), "reason", req.Reason)
	s.writeDeadLetter(w, r, id)
}

func checkDiscardReason(reason string) error {
	var msg string
	switch {
	case strings.TrimSpace(reason) == "":
		msg = "is required: say why the event is dropped (a JSON body {\"reason\": \"…\"} or ?reason=)"
	case !utf8.ValidString(reason):
		msg = "must be valid UTF-8"
	case utf8.RuneCountInString(reason) > order.MaxReasonLen:
		msg = "must be at most " + strconv.Itoa(order.MaxReasonLen) + " characters"
	case containsControl(reason):
		msg = "must not contain control characters"
	default:
		return nil
	}
	return invalid("The discard request is invalid.", order.FieldError{Field: "reason", Message: msg})
}

func containsControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// handleReplayDeadLetter serves POST /api/v1/outbox/dlq/{id}/replay: the
// event goes back to the outbox with its id and sequence; the response is
// the dead letter, now replayed. It takes no body (an empty object is
// accepted).
func (s *server) handleReplayDeadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := deadLetterID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := decodeBody(w, r, &struct{}{}, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Outbox.ReplayDeadLetter(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "dead letter replayed", "id", id, "actor", actorFrom(r.Context()))
	s.writeDeadLetter(w, r, id)
}

// ReplayRequest is the body of POST /api/v1/outbox/dlq/replay: which open
// dead letters to replay. An empty filter is refused unless All is set.
type ReplayRequest struct {
	AggregateType string `json:"aggregate_type,omitempty"`
	AggregateID   string `json:"aggregate_id,omitempty"`
	EventType     string `json:"event_type,omitempty"`
	// Limit, when positive, replays only the first Limit matches in id order.
	Limit int `json:"limit,omitempty"`
	// All must be true to replay with an empty filter: every open dead letter.
	All bool `json:"all,omitempty"`
}

// filter is the request's selection of open dead letters.
func (req *ReplayRequest) filter() outbox.DeadLetterFilter {
	return outbox.DeadLetterFilter{
		State:         outbox.DeadLetterOpen,
		AggregateType: req.AggregateType,
		AggregateID:   req.AggregateID,
		EventType:     req.EventType,
		Limit:         req.Limit,
	}
}

// validate applies DeadLetterFilter.Validate to the request's filter, as the
// drivers and the command line do, and asks for all with an empty one.
func (req *ReplayRequest) validate() error {
	var (
		fe        []order.FieldError
		badFilter *outbox.FilterError
	)
	if errors.As(req.filter().Validate(), &badFilter) {
		fe = filterFieldErrors(badFilter)
	}
	if req.AggregateType == "" && req.AggregateID == "" && req.EventType == "" && !req.All {
		fe = append(fe, order.FieldError{Field: "all",
			Message: "must be true to replay every open dead letter; or give aggregate_type, aggregate_id or event_type"})
	}
	if len(fe) > 0 {
		return invalid("The replay request is invalid.", fe...)
	}
	return nil
}

// ReplayResponse is the body of a replay by filter.
type ReplayResponse struct {
	Replayed int `json:"replayed"`
}

// handleReplayDeadLetters serves POST /api/v1/outbox/dlq/replay.
func (s *server) handleReplayDeadLetters(w http.ResponseWriter, r *http.Request) {
	var req ReplayRequest
	if _, err := decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := req.validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.cfg.Outbox.ReplayDeadLetters(r.Context(), req.filter())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "dead letters replayed", "count", n, "actor", actorFrom(r.Context()),
		"aggregate_type", req.AggregateType, "aggregate_id", req.AggregateID, "event_type", req.EventType)
	s.writeJSON(w, r, http.StatusOK, ReplayResponse{Replayed: n})
}

// filterParams names the fields of an outbox.DeadLetterFilter as the API
// does: the list's query parameters, the replay request's members.
var filterParams = map[string]string{
	"State":         "state",
	"AggregateType": "aggregate_type",
	"AggregateID":   "aggregate_id",
	"EventType":     "event_type",
	"AfterID":       "after",
	"Limit":         "limit",
}

// filterFieldErrors are the fields of a refused dead-letter filter under
// the API's names for them.
func filterFieldErrors(e *outbox.FilterError) []order.FieldError {
	out := make([]order.FieldError, 0, len(e.Fields))
	for _, f := range e.Fields {
		name, ok := filterParams[f.Field]
		if !ok {
			name = f.Field
		}
		out = append(out, order.FieldError{Field: name, Message: f.Message})
	}
	return out
}

func (s *server) writeDeadLetter(w http.ResponseWriter, r *http.Request, id int64) {
	d, err := s.cfg.Outbox.GetDeadLetter(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, NewDeadLetter(d))
}
