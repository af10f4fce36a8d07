package order

import (
	"errors"
	"fmt"
	"strings"
)

// Application error codes. They are transport-neutral; the HTTP layer keeps
// the one code→status map:
//
//	EINVALID       422  semantic validation failed (see Error.Fields)
//	ENOTFOUND      404  unknown order or line item
//	ECONFLICT      409  transition not allowed (see Error.Allowed), idempotency-key reuse
//	EPRECONDITION  412  If-Match version mismatch
//	EUNAUTHORIZED  401  missing or bad credentials
//	EFORBIDDEN     403  credentials without the right to do this
//	EINTERNAL      500  anything else; its details are for the operator's log only
const (
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	ECONFLICT     = "conflict"
	EPRECONDITION = "precondition_failed"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	EINTERNAL     = "internal"
)

// Error is the one application error of Herald's order domain. Callers read
// it with ErrorCode, ErrorMessage, ErrorFields and ErrorAllowed, which see
// through wrapping.
//
// Any non-application error (a disk or network failure) is reported as
// EINTERNAL and its message is not shown to the end user.
type Error struct {
	// Code is machine-readable: one of the E* constants.
	Code string
	// Message is human-readable and safe to show to the caller.
	Message string
	// Fields lists the offending fields of an EINVALID error.
	Fields []FieldError
	// Allowed names, for an ECONFLICT on a transition, the targets a
	// transition request may ask for from the current status (possibly none).
	Allowed []Status
}

// FieldError is one field-level validation failure. Field is the JSON path
// of the field as the client sent it, e.g. "line_items[2].quantity".
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error implements the error interface.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "order error: code=%s message=%s", e.Code, e.Message)
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "; %s: %s", f.Field, f.Message)
	}
	if e.Allowed != nil {
		fmt.Fprintf(&b, "; allowed=%v", e.Allowed)
	}
	return b.String()
}

// Errorf returns an Error with the given code and formatted message.
func Errorf(code string, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the application error in err's chain, ""
// for a nil error and EINTERNAL for any other error.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the application error in err's chain,
// "" for a nil error and "Internal error." for any other error, whose
// details must not reach the end user.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// ErrorFields returns the field errors of the application error in err's
// chain, or nil.
func ErrorFields(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// ErrorAllowed returns the allowed targets named by the application error in
// err's chain, or nil.
func ErrorAllowed(err error) []Status {
	var e *Error
	if errors.As(err, &e) {
		return e.Allowed
	}
	return nil
}

// fieldErrors collects field errors while validating a request.
type fieldErrors []FieldError

func (fe *fieldErrors) add(field, format string, args ...any) {
	*fe = append(*fe, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// err returns an EINVALID Error carrying the collected fields, or nil.
func (fe fieldErrors) err(message string) error {
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Message: message, Fields: fe}
}
