package publishertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memBroker is an in-memory broker with a correct publisher: the reference
// the suite must pass. Its flaws switch on one mutation at a time, and the
// suite must catch each one.
type memBroker struct {
	flaw string

	mu      sync.Mutex
	log     []publishertest.Received
	seen    map[string]bool
	subs    []chan publishertest.Received
	closed  bool
	calls   int
	delayed []publishertest.Received
}

func (b *memBroker) Publish(ctx context.Context, msgs []outbox.Message) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := make([]error, len(msgs))
	switch {
	case b.flaw == "short-results" && len(msgs) > 1:
		errs = errs[:len(msgs)-1]
	case b.flaw == "nil-for-empty" && len(msgs) == 0:
		return []error{nil}
	}
	if b.closed && b.flaw != "accepts-after-close" {
		return outbox.AllFailed(len(msgs), errors.New("mem: closed"))
	}
	if err := ctx.Err(); err != nil && b.flaw != "ignores-ctx" {
		if b.flaw == "ctx-permanent" {
			err = outbox.Permanent(err)
		}
		return outbox.AllFailed(len(msgs), fmt.Errorf("mem: %w", err))
	}
	b.calls++
	var stored []publishertest.Received
	for i, m := range msgs {
		id := m.ID.String()
		if b.seen[id] && b.flaw != "no-dedup" {
			continue
		}
		b.seen[id] = true
		r := publishertest.Received{Body: m.Body, MsgID: id}
		switch b.flaw {
		case "drops":
			if i%100 == 99 {
				continue
			}
		case "corrupts":
			if i == 3 {
				r.Body = []byte(strings.Replace(string(r.Body), `"seq"`, `"Seq"`, 1))
			}
		case "wrong-msgid":
			r.MsgID = "x" + id
		}
		stored = append(stored, r)
	}
	if b.flaw == "reorders" && b.calls%2 == 1 {
		// Hold back odd calls' messages until the next call: a later call's
		// events overtake an earlier call's.
		b.delayed = append(b.delayed, stored...)
		return errs
	}
	stored = append(stored, b.delayed...)
	b.delayed = nil
	for _, r := range stored {
		b.log = append(b.log, r)
		for _, s := range b.subs {
			s <- r
		}
	}
	return errs
}

func (b *memBroker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed && b.flaw == "close-twice-errors" {
		return errors.New("mem: already closed")
	}
	b.closed = true
	return nil
}

// consume replays the log so far and follows it (Persistent).
func (b *memBroker) consume(t *testing.T) <-chan publishertest.Received {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan publishertest.Received, 1<<14)
	if b.flaw != "forgets" {
		for _, r := range b.log {
			ch <- r
		}
	}
	b.subs = append(b.subs, ch)
	return ch
}

func memHarness(flaw string) publishertest.Harness {
	return publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			b := &memBroker{flaw: flaw, seen: map[string]bool{}}
			return publishertest.Instance{Publisher: b, Consume: b.consume}
		},
		Features: publishertest.Features{Dedup: true, Persistent: true},
		Timeout:  3 * time.Second,
	}
}

// TestReference runs the suite against the correct in-memory publisher.
func TestReference(t *testing.T) {
	publishertest.Run(t, memHarness(""))
}

// TestMutant runs the suite against one flawed publisher, named by
// $PUBLISHERTEST_MUTANT; TestSuiteCatchesFlaws runs it in a subprocess.
func TestMutant(t *testing.T) {
	flaw := os.Getenv("PUBLISHERTEST_MUTANT")
	if flaw == "" {
		t.Skip("run by TestSuiteCatchesFlaws")
	}
	publishertest.Run(t, memHarness(flaw))
}

// TestSuiteCatchesFlaws proves that each check can fail: for each flaw, the
// suite run against a publisher with that flaw must fail in the named test.
func TestSuiteCatchesFlaws(t *testing.T) {
	if os.Getenv("PUBLISHERTEST_MUTANT") != "" {
		t.Skip("inside a mutant run")
	}
	for flaw, failing := range map[string]string{
		"drops":               "BatchAcked",
		"corrupts":            "BatchAcked",
		"wrong-msgid":         "BatchAcked",
		"short-results":       "ResultLength",
		"nil-for-empty":       "ResultLength",
		"reorders":            "PerAggregateOrder",
		"no-dedup":            "Dedup",
		"forgets":             "Persistent",
		"ignores-ctx":         "ContextCancelled",
		"ctx-permanent":       "ContextExpired",
		"accepts-after-close": "Close",
		"close-twice-errors":  "Close",
	} {
		t.Run(flaw, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMutant$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "PUBLISHERTEST_MUTANT="+flaw)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("suite passed (or did not run: %v) against a publisher that %s:\n%s", err, flaw, out)
			}
			if want := "--- FAIL: TestMutant/" + failing + " "; !strings.Contains(string(out), want) {
				t.Fatalf("suite did not fail %s for flaw %q:\n%s", failing, flaw, out)
			}
		})
	}
}
