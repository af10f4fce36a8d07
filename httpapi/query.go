package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/heraldhq/herald/order"
)

// query reads a route's query parameters: a malformed query string or an
// unknown parameter is a 400 (a misspelt filter must not silently match
// everything); each parameter at most once, and the checks of its getters,
// give field-level 422s collected in errs.
type query struct {
	values url.Values
	errs   []order.FieldError
}

func parseQuery(r *http.Request, known ...string) (*query, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, newProblem(eBadRequest, "The query string is malformed.")
	}
	q := &query{values: values}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			return nil, newProblem(eBadRequest, fmt.Sprintf("Unknown query parameter %q; known: %s.",
				truncate(k, 64), strings.Join(known, ", ")))
		}
		if len(values[k]) > 1 {
			q.fail(k, "must be given at most once")
		}
	}
	return q, nil
}

func (q *query) fail(field, format string, args ...any) {
	for _, e := range q.errs {
		if e.Field == field {
			return // one error per parameter
		}
	}
	q.errs = append(q.errs, order.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// str returns parameter k: at most maxLen characters, valid UTF-8 without
// control characters.
func (q *query) str(k string, maxLen int) string {
	v := q.values.Get(k)
	switch {
	case !utf8.ValidString(v):
		q.fail(k, "must be valid UTF-8")
	case utf8.RuneCountInString(v) > maxLen:
		q.fail(k, "must be at most %d characters", maxLen)
	case strings.ContainsFunc(v, unicode.IsControl):
		q.fail(k, "must not contain control characters")
	default:
		return v
	}
	return ""
}

// int returns parameter k as an integer in [lo, hi], or def when absent.
func (q *query) int(k string, lo, hi, def int64) int64 {
	v := q.values.Get(k)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		q.fail(k, "must be an integer between %d and %d", lo, hi)
		return def
	}
	return n
}

// err returns the collected field errors as a 422, or nil.
func (q *query) err() error {
	if len(q.errs) == 0 {
		return nil
	}
	return invalid("The query parameters are invalid.", q.errs...)
}
