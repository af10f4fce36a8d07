package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

// Error codes of the HTTP layer itself, beside the order package's
// application codes. They never come from the service.
const (
	eBadRequest       = "bad_request"            // malformed JSON, wrong types, unknown fields, bad headers
	eMethodNotAllowed = "method_not_allowed"     // the path exists, the method does not
	eTooLarge         = "payload_too_large"      // body over MaxBodyBytes
	eUnsupportedType  = "unsupported_media_type" // a body that is not JSON
	eUnavailable      = "unavailable"            // /readyz: a dependency is down
)

// codes is the one map from error codes to HTTP statuses. A code missing
// here is an internal error.
var codes = map[string]int{
	order.EINVALID:      http.StatusUnprocessableEntity,
	order.ENOTFOUND:     http.StatusNotFound,
	order.ECONFLICT:     http.StatusConflict,
	order.EPRECONDITION: http.StatusPreconditionFailed,
	order.EUNAUTHORIZED: http.StatusUnauthorized,
	order.EFORBIDDEN:    http.StatusForbidden,
	order.EINTERNAL:     http.StatusInternalServerError,

	eBadRequest:       http.StatusBadRequest,
	eMethodNotAllowed: http.StatusMethodNotAllowed,
	eTooLarge:         http.StatusRequestEntityTooLarge,
	eUnsupportedType:  http.StatusUnsupportedMediaType,
	eUnavailable:      http.StatusServiceUnavailable,
}

// titles are the problem titles, one per code: short, fixed, the same for
// every occurrence (RFC 9457 §3.1.3).
var titles = map[string]string{
	order.EINVALID:      "Validation failed",
	order.ENOTFOUND:     "Not found",
	order.ECONFLICT:     "Conflict",
	order.EPRECONDITION: "Precondition failed",
	order.EUNAUTHORIZED: "Unauthorized",
	order.EFORBIDDEN:    "Forbidden",
	order.EINTERNAL:     "Internal error",

	eBadRequest:       "Bad request",
	eMethodNotAllowed: "Method not allowed",
	eTooLarge:         "Payload too large",
	eUnsupportedType:  "Unsupported media type",
	eUnavailable:      "Service unavailable",
}

// ErrorStatusCode returns the HTTP status of an error code: an order.E*
// code or one of the HTTP layer's own. Unknown codes are 500.
func ErrorStatusCode(code string) int {
	if status, ok := codes[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// ProblemTypePrefix prefixes a problem's code to make its type URI, e.g.
// "urn:herald:problem:conflict". Clients switch on the type.
const ProblemTypePrefix = "urn:herald:problem:"

// ProblemContentType is the media type of every error response.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem document, the body of every error
// response.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors lists the offending fields of a 422.
	Errors []order.FieldError `json:"errors,omitzero"`
	// Allowed names, on a 409 for a transition, the statuses a transition
	// request may ask for from the current one; [] when there are none
	// (the order package gives a non-nil slice for every refused transition).
	Allowed []order.Status `json:"allowed,omitzero"`
	// RequestID is the X-Request-Id of the request, also in the access log.
	RequestID string `json:"request_id,omitempty"`
}

// problem is an error of the HTTP layer, carrying its code.
type problem struct {
	code    string
	message string
	fields  []order.FieldError
}

func (p *problem) Error() string { return p.code + ": " + p.message }

func newProblem(code, message string) *problem { return &problem{code: code, message: message} }

// invalid returns a 422 problem naming the offending fields.
func invalid(message string, fields ...order.FieldError) *problem {
	return &problem{code: order.EINVALID, message: message, fields: fields}
}

// toProblem converts err into the problem document the client sees: the
// HTTP layer's own problems, order errors, and the outbox's sentinel errors
// converted at this boundary. Anything else is internal and shown as
// "Internal error.".
func toProblem(err error) Problem {
	code, message := order.ErrorCode(err), order.ErrorMessage(err)
	var (
		fields  []order.FieldError
		allowed []order.Status
	)
	var (
		p         *problem
		badFilter *outbox.FilterError
		resolved  *outbox.ResolvedError
	)
	switch {
	case errors.As(err, &p):
		code, message, fields = p.code, p.message, p.fields
	case code != order.EINTERNAL:
		fields, allowed = order.ErrorFields(err), order.ErrorAllowed(err)
	case errors.Is(err, outbox.ErrNotFound):
		code, message = order.ENOTFOUND, "No such dead letter."
	case errors.As(err, &resolved):
		code, message = order.ECONFLICT, fmt.Sprintf("The dead letter was already %s at %s.",
			resolved.State, resolved.At.UTC().Format(time.RFC3339))
	case errors.Is(err, outbox.ErrAlreadyResolved):
		code, message = order.ECONFLICT, "The dead letter was already replayed or discarded."
	case errors.Is(err, outbox.ErrDuplicate):
		code, message = order.ECONFLICT, "The event is in the outbox already."
	case errors.Is(err, outbox.ErrBusy):
		code, message = eUnavailable, "The database is busy; nothing was written. Try again shortly."
	case errors.Is(err, outbox.ErrOutcomeUnknown):
		code, message = eUnavailable, "The connection to the database was lost while the change was being committed: "+
			"it may or may not have been written. Read the resource before trying again, or repeat the request with the same Idempotency-Key."
	case errors.Is(err, outbox.ErrUnavailable):
		code, message = eUnavailable, "The database cannot be reached; nothing was written. Try again shortly."
	case errors.As(err, &badFilter):
		code, message, fields = order.EINVALID, "The dead-letter filter is invalid.", filterFieldErrors(badFilter)
	case errors.Is(err, outbox.ErrInvalidEvent):
		// The request passed the domain's checks but made an event the
		// outbox refuses: still the client's input, and nothing was written.
		// The error's text is the chain of the layers it went through, not
		// a sentence for the client: it stays in the log.
		code, message = order.EINVALID, "The request cannot be stored as an event."
	}
	if ErrorStatusCode(code) == http.StatusInternalServerError {
		// Whatever the error says stays in the log.
		code, message, fields, allowed = order.EINTERNAL, "Internal error.", nil, nil
	}
	return Problem{
		Type:    ProblemTypePrefix + code,
		Title:   titles[code],
		Status:  ErrorStatusCode(code),
		Detail:  message,
		Errors:  fields,
		Allowed: allowed,
	}
}

// writeError writes err as a problem document and logs it if it is
// internal. A client that went away is logged, not reported as an error.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := toProblem(err)
	if p.Status >= 500 {
		level := slog.LevelError
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			level = slog.LevelInfo
		}
		s.log.Log(r.Context(), level, "http: internal error",
			"method", r.Method, "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "error", err)
	} else if errors.Is(err, outbox.ErrInvalidEvent) {
		// The domain's checks let through what the outbox refuses: the
		// client sees a 422, the reason is for the operator.
		s.log.WarnContext(r.Context(), "http: the outbox refused the request's event",
			"method", r.Method, "path", r.URL.Path, "request_id", requestIDFrom(r.Context()), "error", err)
	}
	writeProblemDoc(w, r, p)
}

// writeProblem writes an HTTP-layer problem (never an internal one).
func writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	writeProblemDoc(w, r, toProblem(p))
}

func writeProblemDoc(w http.ResponseWriter, r *http.Request, p Problem) {
	p.Instance = r.URL.Path
	p.RequestID = requestIDFrom(r.Context())
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Del("ETag")
	w.Header().Del("Location")
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
