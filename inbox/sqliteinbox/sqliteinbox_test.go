package sqliteinbox_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/inbox/inboxtest"
	"github.com/heraldhq/herald/internal/testdb"
)

// harness runs the conformance suite on a database file of its own per
// test, with the consumer table applied beside the inbox.
var harness = inboxtest.SQLiteHarness(func(t testing.TB) string { return testdb.SQLitePath(t) })

func TestMain(m *testing.M) {
	inboxtest.Child(harness)
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	inboxtest.Run(t, harness)
}
