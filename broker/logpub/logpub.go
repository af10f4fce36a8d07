// Package logpub is the debugging broker (--broker log): it writes each
// event's CloudEvents JSON as one line to an io.Writer, standard output by
// default, and acknowledges it once written.
package logpub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/heraldhq/herald/outbox"
)

// ErrClosed is returned for messages published after Close.
var ErrClosed = errors.New("logpub: publisher closed")

// Publisher writes events to a writer, one JSON document per line. It
// implements outbox.Publisher and is safe for concurrent use; the lines of
// one Publish call are written in order and never interleave with another
// call's.
type Publisher struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

// New returns a Publisher writing to w, or to os.Stdout when w is nil.
// Close does not close w.
func New(w io.Writer) *Publisher {
	if w == nil {
		w = os.Stdout
	}
	return &Publisher{w: w}
}

// Publish writes one line per message. A message fails only if the writer
// fails (or ctx ended, or the publisher is closed); once the writer has
// failed, the rest of the batch fails with the same error.
func (p *Publisher) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return outbox.AllFailed(len(msgs), ErrClosed)
	}
	var failed error
	line := make([]byte, 0, 1024)
	for i := range msgs {
		if failed == nil {
			if err := ctx.Err(); err != nil {
				failed = fmt.Errorf("logpub: %w", err)
			}
		}
		if failed != nil {
			errs[i] = failed
			continue
		}
		line = append(append(line[:0], compactLine(msgs[i].Body)...), '\n')
		if _, err := p.w.Write(line); err != nil {
			failed = fmt.Errorf("logpub: write: %w", err)
			errs[i] = failed
		}
	}
	return errs
}

// compactLine returns body without line breaks, so one event stays one
// line. Encoded CloudEvents have none; a raw newline can only be JSON
// whitespace there (inside strings it is escaped), so it is safe to drop.
func compactLine(body []byte) []byte {
	for _, c := range body {
		if c == '\n' || c == '\r' {
			out := make([]byte, 0, len(body))
			for _, c := range body {
				if c != '\n' && c != '\r' {
					out = append(out, c)
				}
			}
			return out
		}
	}
	return body
}

// Close stops the publisher; later Publish calls fail with ErrClosed. It
// does not close the writer and is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}
