package redisstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// settings are the query settings ParseURL accepts.
var settings = []string{
	"stream", "maxlen", "client_name",
	"dial_timeout", "read_timeout", "write_timeout",
	"max_message_bytes",
}

// ParseURL reads a broker URL of the form
//
//	redis://[[user]:password@]host[:port][/db][?setting=value&...]
//
// (rediss:// for TLS; port 6379 and database 0 by default) with the
// settings
//
//	stream             the stream's key (default outbox.events)
//	maxlen             trim to about this many entries (default 0: never)
//	client_name        CLIENT SETNAME of every connection (default herald)
//	dial_timeout       Go durations such as 2s or 500ms (default 5s each)
//	read_timeout
//	write_timeout
//	max_message_bytes  the longest body sent (default: the server's
//	                   proto-max-bulk-len)
//
// It refuses any other setting, naming it, and a malformed URL. go-redis's
// own option names (pool_size, db, ...) are not accepted: the publisher
// chooses those itself. No error repeats the password: when a password
// holding an unescaped @ / ? or # makes the URL ambiguous, the error says
// so without quoting it.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return Config{}, errors.New("redisstream: malformed URL (details withheld as it may hold a password; " +
				"escape @ / ? # in a password as %40 %2F %3F %23)")
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Config{}, fmt.Errorf("redisstream: malformed URL: %w", err)
	}
	// An @ past the user info means that a password's unescaped / ? or #
	// ended the user info early, leaving the rest of it in the path, the
	// query or the fragment, which the errors below would quote.
	if strings.Contains(u.Opaque+u.RawPath+u.Path+u.RawQuery+u.Fragment, "@") {
		return Config{}, errors.New("redisstream: malformed URL: an @ after the host " +
			"(escape @ / ? # in a password as %40 %2F %3F %23)")
	}
	var cfg Config
	switch u.Scheme {
	case "redis":
	case "rediss":
		cfg.TLS = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return Config{}, fmt.Errorf("redisstream: URL scheme %q: want redis or rediss", u.Scheme)
	}
	if u.Opaque != "" {
		return Config{}, errors.New("redisstream: malformed URL: want redis://host[:port][/db]")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return Config{}, errors.New("redisstream: malformed URL: a # (escape # in a password as %23)")
	}
	if err := parseServer(u, &cfg); err != nil {
		return Config{}, err
	}
	if err := parseSettings(u.RawQuery, &cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseServer reads the host, port, credentials and database.
func parseServer(u *url.URL, cfg *Config) error {
	host, port := u.Hostname(), u.Port()
	if err := validHost(host); err != nil {
		return err
	}
	if port == "" {
		port = "6379"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("redisstream: port %q: want 1 to 65535", port)
	}
	cfg.Addr = net.JoinHostPort(host, port)

	if u.User != nil {
		pw, ok := u.User.Password()
		if !ok {
			// go-redis would take a lone user name for a password (an old
			// form); ask for the unambiguous one instead.
			return errors.New("redisstream: the URL has a user name but no password " +
				"(write redis://:PASSWORD@host for a password alone)")
		}
		cfg.Username, cfg.Password = u.User.Username(), pw
	}

	switch db := strings.TrimPrefix(u.Path, "/"); db {
	case "":
	default:
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 || strings.HasPrefix(db, "+") {
			return fmt.Errorf("redisstream: URL path %q: want /<database number>", u.Path)
		}
		cfg.DB = n
	}
	return nil
}

// validHost accepts a DNS name or an IP address (an IPv6 one in brackets in
// the URL).
func validHost(host string) error {
	if host == "" {
		return errors.New("redisstream: the URL names no host")
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("redisstream: host %q: not an IPv6 address", host)
		}
		return nil
	}
	for _, c := range host {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '_' {
			return fmt.Errorf("redisstream: host %q: want a DNS name or an IP address", host)
		}
	}
	return nil
}

// parseSettings reads the query settings, refusing unknown and repeated ones.
func parseSettings(rawQuery string, cfg *Config) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("redisstream: URL query: %w", err)
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(settings, name) {
			return fmt.Errorf("redisstream: unknown URL setting %q (known: %s)", name, strings.Join(settings, ", "))
		}
		if len(q[name]) > 1 {
			return fmt.Errorf("redisstream: URL setting %s given %d times", name, len(q[name]))
		}
		if err := setSetting(cfg, name, q.Get(name)); err != nil {
			return fmt.Errorf("redisstream: URL setting %s=%q: %w", name, q.Get(name), err)
		}
	}
	return nil
}

func setSetting(cfg *Config, name, v string) error {
	var err error
	switch name {
	case "stream":
		if v == "" {
			return errors.New("want a stream name")
		}
		cfg.Stream = v
	case "maxlen":
		cfg.MaxLen, err = nonNegative(v)
	case "client_name":
		if v == "" {
			return errors.New("want a name")
		}
		if validClientName(v) != nil {
			return errors.New("want printable ASCII without spaces")
		}
		cfg.ClientName = v
	case "dial_timeout":
		cfg.DialTimeout, err = positiveDuration(v)
	case "read_timeout":
		cfg.ReadTimeout, err = positiveDuration(v)
	case "write_timeout":
		cfg.WriteTimeout, err = positiveDuration(v)
	case "max_message_bytes":
		cfg.MaxMessageBytes, err = nonNegative(v)
		if err == nil && cfg.MaxMessageBytes == 0 {
			err = errors.New("want a positive number of bytes (leave it out to ask the server)")
		}
	}
	return err
}

func nonNegative(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(v, "+") {
		return 0, errors.New("want a whole number, 0 or more")
	}
	return n, nil
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("want a positive duration such as 2s or 500ms")
	}
	return d, nil
}
