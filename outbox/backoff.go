package outbox

import (
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"
)

// RetryPolicy decides how often and how fast a failing event is retried.
type RetryPolicy struct {
	Base        time.Duration // delay after the first failure; default DefaultRetryBase
	Cap         time.Duration // longest delay; default DefaultRetryCap
	MaxAttempts int           // attempts before dead-lettering; default DefaultMaxAttempts
}

// Delay returns the wait before attempt number attempts+1, given that
// attempts have failed so far: exponential growth capped at Cap, with "equal
// jitter" (half fixed, half random) so that a burst of failures spreads out
// without ever retrying immediately.
func (p RetryPolicy) Delay(attempts int) time.Duration {
	p = p.WithDefaults()
	d := p.Cap
	if shift := attempts - 1; shift < 62 {
		if exp := p.Base << max(shift, 0); exp > 0 && exp < p.Cap {
			d = exp
		}
	}
	half := d / 2
	return half + rand.N(half+1) //nolint:gosec // jitter needs no cryptographic randomness
}

// outcome turns one publish result into the verdict stored for the event.
// attempts counts the attempts before this one.
func (p RetryPolicy) outcome(err error, attempts int) Outcome {
	p = p.WithDefaults()
	switch {
	case err == nil:
		return Outcome{Kind: OutcomePublished}
	case IsPermanent(err) || attempts+1 >= p.MaxAttempts:
		return Outcome{Kind: OutcomeDeadLetter, Error: truncate(err.Error())}
	default:
		return Outcome{Kind: OutcomeRetry, Error: truncate(err.Error()), Delay: p.Delay(attempts + 1)}
	}
}

// truncate bounds a stored error message without splitting a character,
// and makes it valid UTF-8 so every database accepts it.
func truncate(s string) string {
	const maxLen = 2000
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= maxLen {
		return s
	}
	cut := maxLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
