package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// SecretPrefix starts the text form of a Standard Webhooks signing secret:
// "whsec_" followed by the key in base64.
const SecretPrefix = "whsec_"

// The key sizes the Standard Webhooks specification allows for HMAC-SHA256
// secrets: at least 192 bits, at most 512.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// ErrInvalidSecret wraps every reason a signing secret is refused. The
// messages never quote the secret.
var ErrInvalidSecret = errors.New("webhook: invalid signing secret")

// redacted is what every printed form of a Secret shows.
const redacted = SecretPrefix + "[REDACTED]"

// Secret is one HMAC-SHA256 signing key. Every way of printing it (fmt
// verbs, slog) shows "whsec_[REDACTED]", so a Config can be logged as it
// is; the key itself never leaves the package.
type Secret struct{ key []byte }

// ParseSecret decodes a secret in the specification's form,
// "whsec_<base64 key>"; the prefix may be left out, as the reference
// libraries allow. The key must be 24 to 64 bytes long.
func ParseSecret(s string) (Secret, error) {
	enc := strings.TrimPrefix(s, SecretPrefix)
	if enc == "" {
		return Secret{}, fmt.Errorf("%w: empty", ErrInvalidSecret)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		// A secret copied without its padding is still unambiguous.
		key, err = base64.RawStdEncoding.DecodeString(enc)
	}
	if err != nil {
		// err would quote an offset into the secret; say only what is wrong.
		return Secret{}, fmt.Errorf("%w: not %sBASE64 (standard base64 alphabet)", ErrInvalidSecret, SecretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return Secret{}, fmt.Errorf("%w: the key is %d bytes long, want %d to %d", ErrInvalidSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return Secret{key: key}, nil
}

// ParseSecrets decodes a space-separated list of secrets, the form of
// HERALD_WEBHOOK_SECRET. Several secrets serve a rotation: every delivery is
// signed with each of them, so a receiver that knows either the old or the
// new one accepts it. Errors say which secret of the list is wrong, by
// position.
func ParseSecrets(s string) ([]Secret, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrInvalidSecret)
	}
	secrets := make([]Secret, len(fields))
	for i, f := range fields {
		sec, err := ParseSecret(f)
		if err != nil {
			if len(fields) > 1 {
				err = fmt.Errorf("secret %d of %d: %w", i+1, len(fields), err)
			}
			return nil, err
		}
		secrets[i] = sec
	}
	return secrets, nil
}

// NewSecret returns a fresh random 32-byte secret, for a test or a
// benchmark that runs both ends.
func NewSecret() Secret {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	return Secret{key: key}
}

// IsZero reports whether s holds no key (the zero Secret).
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// String returns "whsec_[REDACTED]".
func (s Secret) String() string { return redacted }

// GoString returns "whsec_[REDACTED]", for %#v.
func (s Secret) GoString() string { return redacted }

// Format prints "whsec_[REDACTED]" whatever the verb: without it, %d or %x
// of a struct holding a Secret would print the key's bytes.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue keeps the key out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps the key out of JSON and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
