package rabbitmq

import (
	"errors"
	"fmt"
	"maps"
	"net"
	neturl "net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// settings are the query settings ParseURL reads, in the order String
// writes them.
var settings = []string{
	"exchange", "queue", "unroutable", "confirm_timeout", "connect_timeout", "heartbeat",
	"connection_name", "max_message_size", "cacertfile", "certfile", "keyfile",
}

// ParseURL reads the broker URL of Herald's --broker flag:
//
//	amqp://user:password@host:5672/vhost?exchange=orders.events&queue=orders
//
// (amqps:// for TLS). The query settings, each at most once:
//
//	exchange          Config.Exchange (default outbox.events)
//	queue             Config.Queue (default none)
//	unroutable        retry, permanent or drop (default retry)
//	confirm_timeout   Config.ConfirmTimeout, a Go duration (default 30s)
//	connect_timeout   Config.ConnectTimeout (default 10s)
//	heartbeat         Config.Heartbeat, 1s to 65535s (default 10s)
//	connection_name   Config.ConnectionName (default herald)
//	max_message_size  Config.MaxMessageSize in bytes (default: the broker's)
//	cacertfile, certfile, keyfile   PEM files, amqps only
//
// A malformed URL, an unknown or repeated setting, or an invalid value is
// refused with an error wrapping ErrInvalidConfig that names it; the
// password never appears in it. Reserved characters in the user name or
// password (@ : / ? # %) must be percent-encoded.
func ParseURL(raw string) (Config, error) {
	u, err := parseURL(raw)
	if err != nil {
		return Config{}, err
	}
	q, err := neturl.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("%w: query: %w", ErrInvalidConfig, err)
	}
	var cfg Config
	for _, key := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(settings, key) {
			return Config{}, fmt.Errorf("%w: unknown setting %q in the broker URL (known: %s)",
				ErrInvalidConfig, key, strings.Join(settings, ", "))
		}
		if len(q[key]) > 1 {
			return Config{}, fmt.Errorf("%w: setting %s given %d times", ErrInvalidConfig, key, len(q[key]))
		}
		if err := cfg.set(key, q[key][0]); err != nil {
			return Config{}, fmt.Errorf("%w: setting %s: %w", ErrInvalidConfig, key, err)
		}
	}
	cfg.URL, _, _ = strings.Cut(raw, "?")
	if err := cfg.withDefaults().validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// set applies one query setting.
func (c *Config) set(key, v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	var err error
	switch key {
	case "exchange":
		c.Exchange = v
	case "queue":
		c.Queue = v
	case "unroutable":
		c.Unroutable, err = parseUnroutable(v)
	case "confirm_timeout":
		c.ConfirmTimeout, err = positiveDuration(v)
	case "connect_timeout":
		c.ConnectTimeout, err = positiveDuration(v)
	case "heartbeat":
		c.Heartbeat, err = positiveDuration(v)
	case "connection_name":
		c.ConnectionName = v
	case "max_message_size":
		c.MaxMessageSize, err = strconv.Atoi(v)
		if err == nil && c.MaxMessageSize <= 0 {
			err = fmt.Errorf("%d is not a positive number of bytes", c.MaxMessageSize)
		}
	case "cacertfile":
		c.CACertFile = v
	case "certfile":
		c.CertFile = v
	case "keyfile":
		c.KeyFile = v
	}
	return err
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 30s", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s is not positive", d)
	}
	return d, nil
}

// address is the broker part of a URL.
type address struct {
	tls            bool
	host           string // without brackets
	port           int
	user, password string
	vhost          string
}

// parseAddress reads Config.URL, which carries no query settings.
func parseAddress(raw string) (address, error) {
	u, err := parseURL(raw)
	if err != nil {
		return address{}, err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return address{}, fmt.Errorf("%w: Config.URL has query settings; ParseURL reads them into Config", ErrInvalidConfig)
	}
	a := address{tls: u.Scheme == "amqps", host: u.Hostname(), port: 5672, user: "guest", password: "guest", vhost: "/"}
	if a.tls {
		a.port = 5671
	}
	if a.host == "" {
		a.host = "localhost"
	}
	if p := u.Port(); p != "" {
		if a.port, err = strconv.Atoi(p); err != nil || a.port < 1 || a.port > 65535 {
			return address{}, fmt.Errorf("%w: port %q is not between 1 and 65535", ErrInvalidConfig, p)
		}
	}
	if u.User != nil {
		a.user = u.User.Username()
		a.password, _ = u.User.Password()
	}
	// The vhost is one path segment; its own slashes are written %2F.
	if p := strings.TrimPrefix(u.EscapedPath(), "/"); p != "" {
		if strings.Contains(p, "/") {
			return address{}, fmt.Errorf("%w: the vhost is one path segment: write a / in it as %%2F", ErrInvalidConfig)
		}
		a.vhost, _ = neturl.PathUnescape(p) // parseURL checked the escapes
	}
	return a, nil
}

// parseURL parses raw, keeping the password out of any error: net/url's
// errors quote the whole URL.
func parseURL(raw string) (*neturl.URL, error) {
	u, err := neturl.Parse(raw)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: malformed broker URL %s: %s", ErrInvalidConfig, redactRaw(raw), scrubQuoted(err.Error(), raw))
	}
	switch {
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		return nil, fmt.Errorf("%w: broker URL scheme %q, want amqp or amqps", ErrInvalidConfig, u.Scheme)
	case u.Opaque != "":
		return nil, fmt.Errorf("%w: broker URL %s: want %s://host…", ErrInvalidConfig, redactRaw(raw), u.Scheme)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, fmt.Errorf("%w: broker URL %s has a # (percent-encode it as %%23 in a password)", ErrInvalidConfig, redactRaw(raw))
	case strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return nil, fmt.Errorf("%w: broker URL has whitespace or control characters", ErrInvalidConfig)
	}
	return u, nil
}

// redacted is a's URL with the password masked.
func (a address) redacted() string {
	scheme := "amqp"
	if a.tls {
		scheme = "amqps"
	}
	u := neturl.URL{Scheme: scheme, Host: net.JoinHostPort(a.host, strconv.Itoa(a.port)), Path: "/"}
	if a.user != "" || a.password != "" {
		u.User = neturl.UserPassword(a.user, "xxxxx")
	}
	s := u.String()
	if a.vhost != "/" {
		s += neturl.PathEscape(a.vhost)
	}
	return s
}

// dialURL is the URL handed to the AMQP client: no credentials (they go
// in as SASL settings) and no vhost (a Config field), so that nothing the
// client reports can quote them.
func (a address) dialURL() string {
	scheme := "amqp"
	if a.tls {
		scheme = "amqps"
	}
	return scheme + "://" + net.JoinHostPort(a.host, strconv.Itoa(a.port)) + "/"
}

// redactRaw masks the userinfo of a URL that may not parse: everything
// between :// and the last @ before the path.
func redactRaw(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if strings.Contains(raw, "@") {
			return "(URL hidden: it may hold a password)"
		}
		return strconv.Quote(raw)
	}
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		authority = "xxxxx@" + authority[i+1:]
	} else if strings.Contains(path, "@") {
		// An @ past the first / may end a password that holds a /.
		return scheme + "://(hidden)"
	}
	return strconv.Quote(scheme + "://" + authority + path)
}

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// scrubQuoted masks the quoted parts of a net/url error message that come
// from the userinfo of raw (an invalid escape in a password, say).
func scrubQuoted(msg, raw string) string {
	_, rest, _ := strings.Cut(raw, "://")
	userinfo := ""
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		userinfo = rest[:i]
	}
	return quoted.ReplaceAllStringFunc(msg, func(q string) string {
		s, err := strconv.Unquote(q)
		if err != nil || userinfo != "" && strings.Contains(userinfo, s) {
			return `"xxxxx"`
		}
		return q
	})
}
