package main

import (
	"context"
	"strings"
	"testing"
)

// TestRun runs the quickstart and checks what it printed: the three events
// of the account, in order, and an empty outbox.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	want := `account.opened acc-1 #1 {"balance":0}
account.credited acc-1 #2 {"amount":500,"balance":500}
account.credited acc-1 #3 {"amount":250,"balance":750}
pending 0, dead letters 0
`
	if out.String() != want {
		t.Fatalf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
}
