package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds one delivery, within the 15 to 30 s the
	// Standard Webhooks specification recommends and below the relay's
	// default publish timeout (30 s), so that a hanging endpoint fails its
	// requests before the relay's context ends the whole batch.
	DefaultTimeout = 15 * time.Second
	// DefaultConcurrency bounds the deliveries in flight per Publisher.
	DefaultConcurrency = 16
)

// The environment variables Herald reads the settings from (see FromEnv):
// the endpoint's URL keeps its own query string, so the webhook's settings
// cannot be query parameters of --broker as other brokers' are.
const (
	EnvSecret      = "HERALD_WEBHOOK_SECRET"      //nolint:gosec // a variable's name, not a credential; it holds space-separated whsec_ secrets, each signing every delivery
	EnvTimeout     = "HERALD_WEBHOOK_TIMEOUT"     // a Go duration, e.g. 10s
	EnvConcurrency = "HERALD_WEBHOOK_CONCURRENCY" // a positive integer
)

// ErrInvalidURL wraps every reason ParseURL or New refuses an endpoint URL.
var ErrInvalidURL = errors.New("webhook: invalid endpoint URL")

// Config configures a Publisher.
type Config struct {
	// URL is the endpoint, http:// or https://, sent exactly as given,
	// query string included.
	URL string
	// Secrets sign every delivery, each giving one signature of the
	// webhook-signature header (several during a rotation). Required.
	Secrets []Secret
	// Timeout bounds each delivery, from sending the request to reading
	// the answer's status; default DefaultTimeout.
	Timeout time.Duration
	// Concurrency bounds the deliveries in flight across all Publish
	// calls; default DefaultConcurrency. The publisher's own HTTP
	// transport keeps as many idle keep-alive connections to the endpoint.
	Concurrency int
	// Client, when set, sends the requests instead of the publisher's own
	// (for a proxy or TLS settings of the caller's). Its redirect policy is
	// overridden: redirects are never followed. Close leaves it alone.
	Client *http.Client
	// Logger receives the publisher's warnings. Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// String describes c without its secrets, nor the URL's user name, path or
// query (the endpoint's own tokens may be in them).
func (c Config) String() string {
	return fmt.Sprintf("webhook{url=%s secrets=%d timeout=%s concurrency=%d}",
		c.Endpoint(), len(c.Secrets), c.withDefaults().Timeout, c.withDefaults().Concurrency)
}

// Endpoint returns the URL for logs and errors: scheme and host, with "/…"
// standing for a path and "?…" for a query, and the user name left out.
func (c Config) Endpoint() string { return redactURL(c.URL) }

// ParseURL reads Herald's --broker value for a webhook: the endpoint's URL,
// http://HOST[:PORT][/PATH][?QUERY] or https://…, whose query string
// belongs to the endpoint and is sent as it is. So no Herald setting is
// read from the query: the secrets, timeout and concurrency come from the
// environment (FromEnv) or the caller. ParseURL refuses another scheme, a
// missing host, a bad port, a fragment (never sent) and a password in the
// URL (the signing secret authenticates Herald; the password would travel
// with every request and end in logs), naming what is wrong and never
// quoting a password.
func ParseURL(raw string) (Config, error) {
	if err := validateURL(raw); err != nil {
		return Config{}, err
	}
	return Config{URL: raw}, nil
}

func validateURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: empty; want http(s)://HOST[:PORT]/PATH", ErrInvalidURL)
	}
	// Before parsing: a parse error may quote a piece of the password.
	if hasPassword(raw) {
		return fmt.Errorf("%w: the URL has a password in it; authenticate with the signing secret (%s) instead",
			ErrInvalidURL, EnvSecret)
	}
	u, err := neturl.Parse(raw)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which the caller knows
		}
		return fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		if u.Scheme == "" {
			return fmt.Errorf("%w: no scheme; want http:// or https://", ErrInvalidURL)
		}
		return fmt.Errorf("%w: scheme %q, want http or https", ErrInvalidURL, truncateText(u.Scheme, 32))
	case u.Opaque != "" || u.Host == "":
		return fmt.Errorf("%w: %s has no host; want %s://HOST[:PORT]/PATH", ErrInvalidURL, redactURL(raw), u.Scheme)
	case u.Hostname() == "":
		return fmt.Errorf("%w: %s has a port but no host name", ErrInvalidURL, redactURL(raw))
	case u.Fragment != "" || strings.HasSuffix(raw, "#"):
		return fmt.Errorf("%w: %s has a fragment (#…), which is never sent to the endpoint", ErrInvalidURL, redactURL(raw))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: %s: port must be a number between 1 and 65535", ErrInvalidURL, redactURL(raw))
		}
	}
	return nil
}

// hasPassword reports whether raw's authority holds "user:password@".
func hasPassword(raw string) bool {
	_, rest, ok := strings.Cut(raw, "//")
	if !ok {
		return false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndexByte(rest, '@')
	return at >= 0 && strings.Contains(rest[:at], ":")
}

// redactURL is raw reduced to scheme://host, with "/…" for a path and "?…"
// for a query: webhook URLs often carry the endpoint's own token in the
// path or query (…/services/T0/B0/XXXX, ?key=…), and the user name may be
// one too. For a raw that does not parse, a placeholder.
func redactURL(raw string) string {
	u, err := neturl.Parse(raw)
	switch {
	case err != nil:
		return "(unparsable URL)"
	case u.Opaque != "":
		return u.Scheme + ":…"
	}
	s := (&neturl.URL{Scheme: u.Scheme, Host: u.Host}).String()
	if u.Path != "" && u.Path != "/" {
		s += "/…"
	} else {
		s += u.Path
	}
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}

// FromEnv returns c with the settings of the environment variables
// EnvSecret, EnvTimeout and EnvConcurrency, read with lookup (os.LookupEnv);
// a variable that is unset leaves its field as it is. Errors name the
// variable, never the secret's value.
func (c Config) FromEnv(lookup func(string) (string, bool)) (Config, error) {
	if v, ok := lookup(EnvSecret); ok {
		s, err := ParseSecrets(v)
		if err != nil {
			return c, fmt.Errorf("%s: %w", EnvSecret, err)
		}
		c.Secrets = s
	}
	if v, ok := lookup(EnvTimeout); ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s=%q: want a positive duration such as 10s", EnvTimeout, truncateText(v, 40))
		}
		c.Timeout = d
	}
	if v, ok := lookup(EnvConcurrency); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return c, fmt.Errorf("%s=%q: want a positive integer", EnvConcurrency, truncateText(v, 40))
		}
		c.Concurrency = n
	}
	return c, nil
}

// validate reports a configuration no delivery could succeed with.
func (c Config) validate() error {
	if err := validateURL(c.URL); err != nil {
		return err
	}
	if len(c.Secrets) == 0 {
		return fmt.Errorf("%w: none configured (set %s to whsec_…)", ErrInvalidSecret, EnvSecret)
	}
	for i, s := range c.Secrets {
		if s.IsZero() {
			return fmt.Errorf("%w: secret %d is the zero Secret; use ParseSecret", ErrInvalidSecret, i+1)
		}
	}
	return nil
}
