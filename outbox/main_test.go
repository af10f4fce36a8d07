package outbox_test

import (
	"testing"

	"go.uber.org/goleak"
)

// A relay that leaves a goroutine behind after Run returns fails the run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
