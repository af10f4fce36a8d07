package kafka

import (
	"testing"

	"github.com/google/uuid"
)

func TestAppendUUID(t *testing.T) {
	t.Parallel()
	for range 100 {
		id := uuid.New()
		if got := string(appendUUID([]byte("x"), id)); got != "x"+id.String() {
			t.Fatalf("appendUUID = %q, want x%s", got, id)
		}
	}
}
