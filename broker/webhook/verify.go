package webhook

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a delivery's webhook-timestamp may be from the
// receiver's clock, as in the reference libraries: a captured delivery
// cannot be replayed later than that.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify. Each wraps ErrUnverified, so a receiver can answer
// every one of them with 401.
var (
	// ErrUnverified wraps every reason a delivery fails verification.
	ErrUnverified = errors.New("webhook: delivery not verified")
	// ErrMissingHeader: webhook-id, webhook-timestamp or webhook-signature
	// is absent or empty.
	ErrMissingHeader = fmt.Errorf("%w: missing Standard Webhooks header", ErrUnverified)
	// ErrTimestamp: webhook-timestamp is no Unix time in seconds, or lies
	// outside the tolerance (a replay, or a clock far off).
	ErrTimestamp = fmt.Errorf("%w: webhook-timestamp", ErrUnverified)
	// ErrSignature: no v1 signature of the header matches any secret.
	ErrSignature = fmt.Errorf("%w: no valid signature", ErrUnverified)
)

// Verifier checks Standard Webhooks signatures against a set of secrets
// (several during a rotation: one match suffices). Its methods are safe
// for concurrent use once it is set up.
type Verifier struct {
	secrets []Secret
	// Tolerance is how far webhook-timestamp may be from Now, either way;
	// zero means DefaultTolerance, negative disables the check (for fixed
	// test vectors only: without it a captured delivery can be replayed).
	Tolerance time.Duration
	// Now is the receiver's clock; nil means time.Now.
	Now func() time.Time
}

// NewVerifier returns a Verifier accepting deliveries signed with any of
// secrets.
func NewVerifier(secrets ...Secret) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrInvalidSecret)
	}
	for i, s := range secrets {
		if s.IsZero() {
			return nil, fmt.Errorf("%w: secret %d is the zero Secret", ErrInvalidSecret, i+1)
		}
	}
	return &Verifier{secrets: secrets}, nil
}

// Verify checks one delivery with the secrets of HERALD_WEBHOOK_SECRET's
// form (space-separated, see ParseSecrets) and DefaultTolerance. A receiver
// that verifies many deliveries parses the secrets once, with NewVerifier.
func Verify(secrets string, h http.Header, body []byte) error {
	s, err := ParseSecrets(secrets)
	if err != nil {
		return err
	}
	v, err := NewVerifier(s...)
	if err != nil {
		return err
	}
	return v.Verify(h, body)
}

// Verify checks that h carries a webhook-id, a webhook-timestamp within the
// tolerance, and a webhook-signature with at least one "v1," signature of
// id.timestamp.body under one of the secrets (compared in constant time).
// Signatures of other versions ("v1a") are skipped. The error wraps
// ErrMissingHeader, ErrTimestamp or ErrSignature, and ErrUnverified.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	id, tsText, sigs := header(h, HeaderID), header(h, HeaderTimestamp), header(h, HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeader
	}
	ts, err := parseUnix(tsText)
	if err != nil {
		return fmt.Errorf("%w: %q is not a Unix time in seconds", ErrTimestamp, truncateText(tsText, 32))
	}
	if tol := v.tolerance(); tol > 0 {
		now := time.Now
		if v.Now != nil {
			now = v.Now
		}
		if d := now().Sub(time.Unix(ts, 0)); d > tol || d < -tol {
			return fmt.Errorf("%w: %s from the receiver's clock, more than the tolerance of %s", ErrTimestamp, d.Round(time.Second), tol)
		}
	}
	want := make([][]byte, len(v.secrets))
	for i, s := range v.secrets {
		want[i] = mac(s.key, id, []byte(tsText), body, nil)
	}
	for sig := range strings.FieldsSeq(sigs) {
		version, enc, ok := strings.Cut(sig, ",")
		if !ok || version != signatureVersion {
			continue // another scheme's signature, or none
		}
		got, err := base64.StdEncoding.Strict().DecodeString(enc)
		if err != nil {
			continue
		}
		for _, w := range want {
			if hmac.Equal(got, w) {
				return nil
			}
		}
	}
	return ErrSignature
}

func (v *Verifier) tolerance() time.Duration {
	if v.Tolerance == 0 {
		return DefaultTolerance
	}
	return v.Tolerance
}

// header returns h's value for name, looked up both canonically (as a Go
// server stores it) and as given (a header map filled by hand with the
// specification's lower-case names).
func header(h http.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// parseUnix reads a webhook-timestamp: decimal digits only, no sign.
func parseUnix(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not decimal digits")
	}
	return strconv.ParseInt(s, 10, 64)
}

// truncateText shortens s to at most n bytes of valid UTF-8, for quoting
// untrusted input in an error.
func truncateText(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}
