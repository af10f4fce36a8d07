package logpub_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker/logpub"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lineFeed is an io.Writer that hands each complete line to the
// subscriber, if there is one.
type lineFeed struct {
	mu      sync.Mutex
	partial []byte
	ch      chan publishertest.Received
}

func (f *lineFeed) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.partial = append(f.partial, b...)
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		if f.ch != nil {
			f.ch <- publishertest.Received{Body: bytes.Clone(f.partial[:i])}
		}
		f.partial = f.partial[i+1:]
	}
}

func (f *lineFeed) consume(*testing.T) <-chan publishertest.Received {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ch = make(chan publishertest.Received, 1<<14)
	return f.ch
}

func TestConformance(t *testing.T) {
	publishertest.Run(t, publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			f := &lineFeed{}
			return publishertest.Instance{Publisher: logpub.New(f), Consume: f.consume}
		},
		// A log neither deduplicates nor keeps anything for later readers.
		Features: publishertest.Features{},
	})
}

func TestOneLinePerEvent(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := logpub.New(&buf)
	msgs := publishertest.Batch(t, "line", 3, 1)
	msgs[1].Body = []byte("{\n  \"specversion\": \"1.0\"\n}") // pretty-printed JSON
	for i, err := range p.Publish(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	lines := strings.Split(buf.String(), "\n")
	want := []string{string(msgs[0].Body), `{  "specversion": "1.0"}`, string(msgs[2].Body), ""}
	if len(lines) != len(want) {
		t.Fatalf("wrote %d lines, want 3 and a final newline:\n%s", len(lines)-1, buf.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Fatalf("line %d = %q, want %q", i, lines[i], want[i])
		}
	}
}

type failAfter struct {
	n   int
	err error
}

func (w *failAfter) Write(b []byte) (int, error) {
	if w.n == 0 {
		return 0, w.err
	}
	w.n--
	return len(b), nil
}

func TestWriterFailure(t *testing.T) {
	t.Parallel()
	broken := errors.New("disk full")
	p := logpub.New(&failAfter{n: 2, err: broken})
	errs := p.Publish(context.Background(), publishertest.Batch(t, "fail", 5, 1))
	if len(errs) != 5 || errs[0] != nil || errs[1] != nil {
		t.Fatalf("first two messages should be written: %v", errs)
	}
	for i := 2; i < 5; i++ {
		if !errors.Is(errs[i], broken) || outbox.IsPermanent(errs[i]) {
			t.Fatalf("message %d: error %v, want a retryable error wrapping %v", i, errs[i], broken)
		}
	}
}

func TestDefaultsToStdout(t *testing.T) {
	// Not parallel: it swaps os.Stdout for a pipe while New reads it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	stdout := os.Stdout
	os.Stdout = w
	p := logpub.New(nil)
	os.Stdout = stdout

	msgs := publishertest.Batch(t, "stdout", 1, 1)
	if errs := p.Publish(context.Background(), msgs); len(errs) != 1 || errs[0] != nil {
		t.Fatalf("Publish: %v", errs)
	}
	_ = p.Close()
	_ = w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(msgs[0].Body) + "\n"; string(out) != want {
		t.Fatalf("stdout got %q, want %q", out, want)
	}
}
