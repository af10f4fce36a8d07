package order

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorHelpers(t *testing.T) {
	t.Parallel()
	conflict := &Error{Code: ECONFLICT, Message: "No.", Allowed: []Status{StatusCancelled}}
	invalid := &Error{Code: EINVALID, Message: "Bad.", Fields: []FieldError{{"currency", "is required"}}}
	tests := []struct {
		name    string
		err     error
		code    string
		message string
		fields  []FieldError
		allowed []Status
	}{
		{"nil", nil, "", "", nil, nil},
		{"foreign", errors.New("disk on fire"), EINTERNAL, "Internal error.", nil, nil},
		{"Errorf", Errorf(ENOTFOUND, "Order %s not found.", "o-1"), ENOTFOUND, "Order o-1 not found.", nil, nil},
		{"conflict", conflict, ECONFLICT, "No.", nil, []Status{StatusCancelled}},
		{"wrapped conflict", fmt.Errorf("applying: %w", conflict), ECONFLICT, "No.", nil, []Status{StatusCancelled}},
		{"wrapped invalid", fmt.Errorf("a: %w", fmt.Errorf("b: %w", invalid)), EINVALID, "Bad.", []FieldError{{"currency", "is required"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assertEqual(t, "code", ErrorCode(tt.err), tt.code)
			assertEqual(t, "message", ErrorMessage(tt.err), tt.message)
			assertEqual(t, "fields", ErrorFields(tt.err), tt.fields)
			assertEqual(t, "allowed", ErrorAllowed(tt.err), tt.allowed)
		})
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  *Error
		want string
	}{
		{Errorf(EPRECONDITION, "Version %d.", 3), "order error: code=precondition_failed message=Version 3."},
		{&Error{Code: EINVALID, Message: "Bad.", Fields: []FieldError{{"a", "x"}, {"b", "y"}}}, "order error: code=invalid message=Bad.; a: x; b: y"},
		{&Error{Code: ECONFLICT, Message: "No.", Allowed: []Status{}}, "order error: code=conflict message=No.; allowed=[]"},
		{&Error{Code: ECONFLICT, Message: "No.", Allowed: []Status{"cancelled", "shipped"}}, "order error: code=conflict message=No.; allowed=[cancelled shipped]"},
	} {
		assertEqual(t, "Error()", tt.err.Error(), tt.want)
	}
}

func TestErrorCodeValues(t *testing.T) {
	t.Parallel()
	// The HTTP layer and clients key on these strings; they must not change.
	assertEqual(t, "codes", []string{EINVALID, ENOTFOUND, ECONFLICT, EPRECONDITION, EUNAUTHORIZED, EFORBIDDEN, EINTERNAL},
		[]string{"invalid", "not_found", "conflict", "precondition_failed", "unauthorized", "forbidden", "internal"})
}
