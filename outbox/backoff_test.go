package outbox

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRetryDelayGrowsAndStaysInBounds(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Base: time.Second, Cap: time.Minute, MaxAttempts: 10}
	for attempts, full := range map[int]time.Duration{
		1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second,
		7: time.Minute, 50: time.Minute, 500: time.Minute,
	} {
		for range 200 {
			d := p.Delay(attempts)
			if d < full/2 || d > full {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", attempts, d, full/2, full)
			}
		}
	}
}

func TestRetryPolicyDefaults(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{}.WithDefaults()
	if p.Base != time.Second || p.Cap != 5*time.Minute || p.MaxAttempts != 10 {
		t.Fatalf("defaults = %+v, want 1s, 5m, 10 (issue 2)", p)
	}
	if d := (RetryPolicy{Base: time.Hour, Cap: time.Second}).WithDefaults(); d.Cap != time.Hour {
		t.Fatalf("a cap below the base must be raised to it, got %s", d.Cap)
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Base: time.Second, Cap: time.Minute, MaxAttempts: 3}
	boom := errors.New("boom")
	cases := []struct {
		name     string
		err      error
		attempts int
		want     OutcomeKind
	}{
		{"acked", nil, 0, OutcomePublished},
		{"acked after failures", nil, 2, OutcomePublished},
		{"first failure", boom, 0, OutcomeRetry},
		{"second failure", boom, 1, OutcomeRetry},
		{"last allowed attempt fails", boom, 2, OutcomeDeadLetter},
		{"permanent at once", Permanent(boom), 0, OutcomeDeadLetter},
	}
	for _, c := range cases {
		o := p.outcome(c.err, c.attempts)
		if o.Kind != c.want {
			t.Errorf("%s: kind %d, want %d", c.name, o.Kind, c.want)
		}
		if c.err != nil && !strings.Contains(o.Error, "boom") {
			t.Errorf("%s: error %q lost the cause", c.name, o.Error)
		}
		if o.Kind == OutcomeRetry && o.Delay <= 0 {
			t.Errorf("%s: retry without delay", c.name)
		}
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("400 bad request")
	err := Permanent(base)
	if !IsPermanent(err) || !errors.Is(err, base) {
		t.Fatalf("Permanent(%v) = %v: not permanent or lost its cause", base, err)
	}
	if IsPermanent(base) || Permanent(nil) != nil {
		t.Fatal("a plain error is not permanent; Permanent(nil) is nil")
	}
}

func TestTruncateKeepsValidUTF8(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 1500) // 3000 bytes, a 2-byte rune at the cut
	got := truncate(long + "\x00\xff")
	if !utf8.ValidString(got) || len(got) > 2000 || strings.ContainsRune(got, 0) {
		t.Fatalf("truncate: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if got := truncate("bad\x00\xffbyte"); got != "bad\uFFFDbyte" {
		t.Fatalf("truncate = %q", got)
	}
}
