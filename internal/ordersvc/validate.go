package ordersvc

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/order"
)

// checkOptions validates what comes with a request besides its body.
func checkOptions(opts order.RequestOptions) error {
	var fe []order.FieldError
	fe = checkActor(fe, opts.Actor)
	if k := opts.IdempotencyKey; k != "" {
		switch {
		case len(k) > MaxIdempotencyKeyLen:
			fe = append(fe, order.FieldError{Field: "idempotency_key", Message: "must be at most 255 bytes"})
		case !utf8.ValidString(k) || hasControl(k):
			fe = append(fe, order.FieldError{Field: "idempotency_key", Message: "must be printable UTF-8"})
		}
	}
	return invalid("The request is invalid.", fe)
}

// checkTransition validates a transition request and its options together,
// so that the caller sees every field error at once.
func checkTransition(req order.TransitionRequest, opts order.RequestOptions) error {
	var fe []order.FieldError
	if err := req.Validate(); err != nil {
		fe = append(fe, order.ErrorFields(err)...)
	}
	if err := checkOptions(opts); err != nil {
		fe = append(fe, order.ErrorFields(err)...)
	}
	return invalid("The transition request is invalid.", fe)
}

// checkActor applies the domain's rules for ids to the actor, which every
// audit row records.
func checkActor(fe []order.FieldError, actor string) []order.FieldError {
	msg := ""
	switch {
	case actor == "":
		msg = "is required"
	case !utf8.ValidString(actor):
		msg = "must be valid UTF-8"
	case utf8.RuneCountInString(actor) > order.MaxIDLen:
		msg = "must be at most 128 characters"
	case hasControl(actor):
		msg = "must not contain control characters"
	case strings.TrimSpace(actor) != actor:
		msg = "must not begin or end with white space"
	default:
		return fe
	}
	return append(fe, order.FieldError{Field: "actor", Message: msg})
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

func invalid(msg string, fe []order.FieldError) error {
	if len(fe) == 0 {
		return nil
	}
	return &order.Error{Code: order.EINVALID, Message: msg, Fields: fe}
}

// listQuery validates a list filter and turns it into a store query.
func listQuery(f order.ListFilter) (ListQuery, error) {
	var fe []order.FieldError
	q := ListQuery{Status: f.Status, CustomerID: f.CustomerID, Limit: f.Limit}
	switch {
	case f.Limit == 0:
		q.Limit = DefaultListLimit
	case f.Limit < 1 || f.Limit > MaxListLimit:
		fe = append(fe, order.FieldError{Field: "limit", Message: "must be between 1 and 100"})
	}
	if f.Status != "" && !order.OrderMachine().Has(f.Status) {
		fe = append(fe, order.FieldError{Field: "status", Message: "is not an order status"})
	}
	if c := f.CustomerID; c != "" && (!utf8.ValidString(c) || utf8.RuneCountInString(c) > order.MaxIDLen) {
		fe = append(fe, order.FieldError{Field: "customer_id", Message: "must be valid UTF-8 of at most 128 characters"})
	}
	if f.Cursor != "" {
		c, ok := DecodeCursor(f.Cursor)
		if ok {
			q.After = &c
		} else {
			fe = append(fe, order.FieldError{Field: "cursor", Message: "is not a cursor this service issued"})
		}
	}
	if err := invalid("The list filter is invalid.", fe); err != nil {
		return ListQuery{}, err
	}
	return q, nil
}

// cursorLen is the size of a decoded cursor: unix microseconds, then the id.
const cursorLen = 8 + 16

// EncodeCursor renders c as an opaque, URL-safe string.
func EncodeCursor(c Cursor) string {
	var b [cursorLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c.CreatedAt.UnixMicro()))
	copy(b[8:], c.ID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Bounds of a cursor's time: an order's creation time is shown in RFC 3339,
// which has four-digit years, so no cursor this service issues lies outside
// them. Within them both stores compare times alike; beyond them they do
// not (PostgreSQL's timestamptz ends in the years 4713 BC and 294276, and
// a time further out overflows on its way there), so a cursor out there is
// refused rather than read differently by each store.
var (
	minCursorTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxCursorTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// DecodeCursor parses a string made by EncodeCursor. It refuses anything
// else: text that is not the encoding of a cursor, or one whose time is not
// an order's (before the year 1 or after 9999).
func DecodeCursor(s string) (Cursor, bool) {
	if len(s) != base64.RawURLEncoding.EncodedLen(cursorLen) {
		return Cursor{}, false // and no CR or LF, which DecodeString would skip
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != cursorLen {
		return Cursor{}, false
	}
	var id uuid.UUID
	copy(id[:], b[8:])
	t := time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8]))).UTC()
	if t.Before(minCursorTime) || t.After(maxCursorTime) {
		return Cursor{}, false
	}
	return Cursor{CreatedAt: t, ID: id}, true
}
