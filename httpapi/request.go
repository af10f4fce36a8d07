package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/order"
)

// MaxIdempotencyKeyLen bounds the Idempotency-Key header, in bytes.
const MaxIdempotencyKeyLen = 128

// decodeBody reads the request's JSON object into dst, strictly: 413 for a
// body over MaxBodyBytes, 415 unless it is sent as JSON, 400 for anything
// that is not exactly one JSON object of dst's shape (syntax errors, wrong
// types, unknown or duplicate fields, trailing data, invalid UTF-8).
//
// With required false, a request without a body leaves dst untouched and
// returns false; otherwise an empty body is a 400.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, required bool) (bool, error) {
	if r.ContentLength > 0 { // refuse a body of the wrong type before reading it
		if err := checkContentType(r); err != nil {
			return false, err
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return false, newProblem(eTooLarge, fmt.Sprintf("The request body exceeds %d bytes.", MaxBodyBytes))
		}
		return false, newProblem(eBadRequest, "The request body could not be read.")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if !required {
			return false, nil
		}
		return false, newProblem(eBadRequest, "The request body is empty; a JSON object is required.")
	}
	if r.ContentLength < 0 { // a chunked body of unknown length
		if err := checkContentType(r); err != nil {
			return false, err
		}
	}
	return true, decodeJSON(body, dst)
}

// checkContentType requires a JSON media type: application/json or a
// +json type, with any parameters.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return nil
	}
	if ct == "" {
		ct = "none"
	}
	return newProblem(eUnsupportedType, fmt.Sprintf("The request body must be application/json; Content-Type is %s.", truncate(ct, 100)))
}

// decodeJSON decodes body, which must be exactly one JSON object, into dst
// (a pointer to a struct).
func decodeJSON(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return newProblem(eBadRequest, "The request body is not valid UTF-8.")
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); trimmed[0] != '{' {
		return newProblem(eBadRequest, "The request body must be a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		return newProblem(eBadRequest, "The request body has data after its JSON object.")
	}
	// encoding/json matches keys case-insensitively and keeps the last of
	// duplicate keys; both hide client mistakes, so refuse them.
	keys := json.NewDecoder(bytes.NewReader(body))
	if err := checkKeys(keys, reflect.TypeOf(dst), ""); err != nil {
		return err
	}
	return nil
}

// decodeError turns an encoding/json error into a 400 problem whose detail
// names the offending field.
func decodeError(err error) error {
	if e, ok := errors.AsType[*json.SyntaxError](err); ok {
		return newProblem(eBadRequest, fmt.Sprintf("The request body is not valid JSON: %s (at byte %d).", e.Error(), e.Offset))
	}
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		field := e.Field
		if field == "" {
			return newProblem(eBadRequest, "The request body must be a JSON object.")
		}
		return newProblem(eBadRequest, fmt.Sprintf("Field %s must be %s, not %s.", field, jsonTypeName(e.Type), truncate(e.Value, 100)))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return newProblem(eBadRequest, "The request body is not valid JSON: it ends early.")
	}
	// encoding/json has no type for an unknown field; its message is
	// `json: unknown field "name"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return newProblem(eBadRequest, fmt.Sprintf("Unknown field %s.", truncate(name, 140)))
	}
	return newProblem(eBadRequest, "The request body is not valid JSON.")
}

func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.Kind().String()
}

// checkKeys walks the JSON value at dec's position against type t (which
// it has already been decoded into, so the shapes agree) and refuses an
// object key that is not exactly a field's JSON name, or that repeats.
func checkKeys(dec *json.Decoder, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct && t.Kind() != reflect.Slice {
		var skip json.RawMessage
		return dec.Decode(&skip)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		fields := jsonFields(t)
		seen := make(map[string]bool)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			ft, ok := fields[key]
			switch {
			case !ok:
				return newProblem(eBadRequest, fmt.Sprintf("Unknown field %q.", truncate(path+key, 140)))
			case seen[key]:
				return newProblem(eBadRequest, fmt.Sprintf("Field %q appears twice.", truncate(path+key, 140)))
			}
			seen[key] = true
			if err := checkKeys(dec, ft, path+key+"."); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := checkKeys(dec, t.Elem(), strings.TrimSuffix(path, ".")+"["+strconv.Itoa(i)+"]."); err != nil {
				return err
			}
		}
	default: // null
		return nil
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps the JSON names of struct type t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := make(map[string]reflect.Type)
	if t.Kind() == reflect.Struct {
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch name {
			case "-":
				continue
			case "":
				name = f.Name
			}
			m[name] = f.Type
		}
	}
	fieldCache.Store(t, m)
	return m
}

// orderID returns the {id} path value as an order id. A value that is not
// a UUID names no order: 404.
func orderID(r *http.Request) (uuid.UUID, error) {
	return pathUUID(r, "id", "order")
}

// pathUUID parses path value name as a UUID in its canonical form.
func pathUUID(r *http.Request, name, what string) (uuid.UUID, error) {
	v := r.PathValue(name)
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		return uuid.Nil, order.Errorf(order.ENOTFOUND, "No %s has id %q.", what, truncate(v, 64))
	}
	return id, nil
}

// deadLetterID returns the {id} path value as a dead-letter id; anything
// but a positive integer names no dead letter: 404.
func deadLetterID(r *http.Request) (int64, error) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != v {
		return 0, order.Errorf(order.ENOTFOUND, "No dead letter has id %q.", truncate(v, 64))
	}
	return id, nil
}

// ifMatch parses the If-Match header: an order version as an entity tag
// ("3") or bare (3). Absent or "*" (any version) gives nil. Weak tags,
// lists and anything else are a 400.
func ifMatch(r *http.Request) (*int64, error) {
	vals := r.Header.Values("If-Match")
	if len(vals) == 0 {
		return nil, nil
	}
	bad := func(why string) error {
		return newProblem(eBadRequest, "The If-Match header "+why+`; send the order's ETag, e.g. If-Match: "3".`)
	}
	if len(vals) > 1 {
		return nil, bad("must be given once")
	}
	v := strings.TrimSpace(vals[0])
	switch {
	case v == "*":
		return nil, nil
	case strings.HasPrefix(v, "W/"):
		return nil, bad("must not be a weak entity tag")
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		v = v[1 : len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != v {
		return nil, bad("must be a single version number")
	}
	return &n, nil
}

// idempotencyKey returns the Idempotency-Key header: absent gives "";
// otherwise it must be given once, 1–MaxIdempotencyKeyLen printable ASCII
// characters, or the request is a 400.
func idempotencyKey(r *http.Request) (string, error) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	bad := func(why string) error { return newProblem(eBadRequest, "The Idempotency-Key header "+why+".") }
	if len(vals) > 1 {
		return "", bad("must be given once")
	}
	k := vals[0]
	switch {
	case k == "":
		return "", bad("must not be empty")
	case len(k) > MaxIdempotencyKeyLen:
		return "", bad(fmt.Sprintf("must be at most %d characters", MaxIdempotencyKeyLen))
	case !printableASCII(k) || strings.TrimSpace(k) != k:
		return "", bad("must be printable ASCII without leading or trailing spaces")
	}
	return k, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestOptions gathers the actor and, where the route honours them, the
// If-Match and Idempotency-Key headers.
func requestOptions(r *http.Request, withIfMatch, withIdempotency bool) (order.RequestOptions, error) {
	opts := order.RequestOptions{Actor: actorFrom(r.Context())}
	var err error
	if withIfMatch {
		if opts.IfMatch, err = ifMatch(r); err != nil {
			return opts, err
		}
	}
	if withIdempotency {
		if opts.IdempotencyKey, err = idempotencyKey(r); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

type requestIDKey struct{}

// requestID returns the client's X-Request-Id if it is a sane one, or a
// new random id.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 && printableASCII(id) && !strings.ContainsRune(id, ' ') {
		return id
	}
	return uuid.NewString()
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// truncate shortens s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
