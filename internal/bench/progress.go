package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress redraws one status line on a terminal (a bar, the rate and the
// errors) and, when the output is not a terminal, prints a plain line every
// few seconds instead.
type Progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	// status returns the fraction done (negative when unknown) and the text
	// after the bar.
	status func() (float64, string)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// StartProgress draws status on w until Stop. A nil w draws nothing.
func StartProgress(w io.Writer, status func() (float64, string)) *Progress {
	p := &Progress{w: w, tty: IsTerminal(w), start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}), status: status}
	if w == nil {
		close(p.done)
		return p
	}
	interval := 5 * time.Second
	if p.tty {
		interval = 200 * time.Millisecond
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw(true)
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
	return p
}

func (p *Progress) draw(final bool) {
	frac, text := p.status()
	elapsed := time.Since(p.start).Truncate(100 * time.Millisecond)
	if !p.tty {
		if frac >= 0 {
			_, _ = fmt.Fprintf(p.w, "bench: %5.1f%%  %s  %s\n", 100*frac, elapsed, text)
		} else {
			_, _ = fmt.Fprintf(p.w, "bench: %s  %s\n", elapsed, text)
		}
		return
	}
	const width = 30
	bar := strings.Repeat("·", width)
	if frac >= 0 {
		n := int(min(frac, 1) * width)
		bar = strings.Repeat("█", n) + strings.Repeat("░", width-n)
	}
	end := ""
	if final {
		end = "\n"
	}
	_, _ = fmt.Fprintf(p.w, "\r\033[K[%s] %s  %s%s", bar, elapsed, text, end)
}

// Stop draws the last line and stops. It is safe to call twice.
func (p *Progress) Stop() {
	p.once.Do(func() {
		if p.w != nil {
			close(p.stop)
		}
		<-p.done
	})
}
