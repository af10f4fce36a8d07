package kafka

import (
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is the port of a broker given without one.
const DefaultPort = "9092"

// settings are the query settings ParseURL knows, in the order its errors
// list them.
var settings = []string{
	"topic", "create_topic", "partitions", "replication_factor", "client_id",
	"sasl_mechanism", "tls", "tls_ca", "tls_insecure_skip_verify",
	"dial_timeout", "request_timeout", "delivery_timeout", "compression",
}

// ParseURL reads a broker URL of Herald's --broker flag:
//
//	kafka://[user:password@]host[:port][,host[:port]...][?setting=value&...]
//
// The brokers may also be a comma-separated list of kafka:// URLs
// (kafka://a:9092,kafka://b:9092?topic=orders.events); the settings then
// follow the last one. A port defaults to 9092. The settings, each at most
// once:
//
//	topic                     topic name; default outbox.events
//	create_topic              true|false: create the topic when missing; default true
//	partitions                partitions of a created topic; default 3
//	replication_factor        replicas of a created topic; default -1, the broker's default
//	client_id                 client.id the brokers see; default herald
//	sasl_mechanism            plain|scram-sha-256|scram-sha-512, with the URL's user:password
//	tls                       true|false; default false
//	tls_ca                    PEM file of the CAs to trust (implies tls)
//	tls_insecure_skip_verify  true|false: skip the certificate check, tests only (implies tls)
//	dial_timeout              Go duration; default 10s
//	request_timeout           Go duration: the broker's time to answer a produce; default 10s
//	delivery_timeout          Go duration: a record's time to be sent; default 30s
//	compression               none|gzip|snappy|lz4|zstd; default none
//
// An unknown setting, a malformed value or URL is refused with an error
// that names it (wrapping ErrInvalidConfig); the password never appears in
// an error.
func ParseURL(raw string) (Config, error) {
	var cfg Config
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	// The query starts at the first '?': a password with '?' or ',' must
	// be percent-encoded, as in any URL.
	hosts, query, _ := strings.Cut(raw, "?")
	if strings.Contains(query, "@") {
		// A password with a raw '?' puts its tail here.
		return bad("%v", errMalformed)
	}
	var user *neturl.Userinfo
	for i, part := range strings.Split(hosts, ",") {
		part = strings.TrimSpace(part)
		if i > 0 && !strings.Contains(part, "://") {
			part = "kafka://" + part
		}
		u, err := parseBroker(part)
		if err != nil {
			return bad("broker %d: %v", i+1, err)
		}
		if u.User != nil {
			if user != nil && u.User.String() != user.String() {
				return bad("brokers %d and before give different users; give user:password once", i+1)
			}
			user = u.User
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(strings.Trim(u.Host, "[]"), DefaultPort)
		}
		cfg.Brokers = append(cfg.Brokers, host)
	}
	if user != nil {
		cfg.SASL.User = user.Username()
		cfg.SASL.Password, _ = user.Password()
	}
	if err := applySettings(&cfg, query); err != nil {
		return Config{}, err
	}
	if err := cfg.withDefaults().validate(); err != nil {
		return Config{}, err
	}
	if cfg.tlsEnabled() {
		// Read the CA file now, so that a wrong path stops the process
		// before it starts anything.
		if _, err := cfg.tlsConfig(); err != nil {
			return Config{}, err
		}
	}
	return cfg, nil
}

// parseBroker parses one kafka://[userinfo@]host[:port] element, with
// errors that never repeat the password.
func parseBroker(part string) (*neturl.URL, error) {
	scheme, _, ok := strings.Cut(part, "://")
	isKafka := strings.EqualFold(scheme, "kafka")
	switch {
	case !ok:
		return nil, errors.New("want kafka://host:port")
	case !isKafka && schemeName.MatchString(scheme):
		return nil, fmt.Errorf("scheme %q, want kafka://", scheme)
	case !isKafka:
		return nil, errors.New("want kafka://host:port")
	}
	u, err := neturl.Parse(part)
	if err != nil {
		// url.Parse's message repeats the URL, and a password with a
		// character that should have been encoded ends up in its host
		// or port: say nothing of the text.
		return nil, errMalformed
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("no host")
	case u.Path != "" && u.Path != "/":
		return nil, errors.New("unexpected path after host:port")
	case u.Fragment != "" || strings.Contains(part, "#"):
		return nil, errors.New("unexpected fragment (#)")
	}
	if u.User != nil && u.User.Username() == "" {
		return nil, errors.New("empty user name")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, errors.New("port out of range")
		}
	}
	return u, nil
}

var schemeName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]{0,15}$`)

// errMalformed says nothing of the URL's text, which may hold a password.
var errMalformed = errors.New("malformed URL (percent-encode : / ? # @ , in a user or password)")

// applySettings reads the query settings into cfg.
func applySettings(cfg *Config, query string) error {
	values, err := neturl.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("%w: query: %w", ErrInvalidConfig, err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys) // report the same unknown setting every time
	var tlsSet, tlsOn bool
	for _, k := range keys {
		if !slices.Contains(settings, k) {
			return fmt.Errorf("%w: unknown setting %q (known: %s)", ErrInvalidConfig, k, strings.Join(settings, ", "))
		}
		if len(values[k]) > 1 {
			return fmt.Errorf("%w: setting %s given %d times", ErrInvalidConfig, k, len(values[k]))
		}
		v := values[k][0]
		if err := applySetting(cfg, k, v); err != nil {
			return fmt.Errorf("%w: setting %s=%q: %w", ErrInvalidConfig, k, v, err)
		}
		if k == "tls" {
			tlsSet, tlsOn = true, cfg.TLS
		}
	}
	if tlsSet && !tlsOn && (cfg.TLSCAFile != "" || cfg.TLSInsecureSkipVerify) {
		return fmt.Errorf("%w: tls=false contradicts tls_ca or tls_insecure_skip_verify", ErrInvalidConfig)
	}
	return nil
}

func applySetting(cfg *Config, k, v string) error {
	var err error
	switch k {
	case "topic":
		cfg.Topic = v
		if v == "" {
			return errors.New("empty")
		}
	case "create_topic":
		var create bool
		create, err = strconv.ParseBool(v)
		cfg.NoCreateTopic = !create
	case "partitions":
		var n int64
		if n, err = strconv.ParseInt(v, 10, 32); err == nil && n < 1 {
			err = errors.New("want at least 1")
		}
		cfg.Partitions = int32(n)
	case "replication_factor":
		var n int64
		if n, err = strconv.ParseInt(v, 10, 16); err == nil && (n == 0 || n < -1) {
			err = errors.New("want -1 (the broker's default) or at least 1")
		}
		cfg.ReplicationFactor = int16(n)
	case "client_id":
		cfg.ClientID = v
		if v == "" {
			return errors.New("empty")
		}
	case "sasl_mechanism":
		cfg.SASL.Mechanism = strings.ToLower(v)
	case "tls":
		cfg.TLS, err = strconv.ParseBool(v)
	case "tls_ca":
		cfg.TLSCAFile = v
		if v == "" {
			return errors.New("empty")
		}
	case "tls_insecure_skip_verify":
		cfg.TLSInsecureSkipVerify, err = strconv.ParseBool(v)
	case "dial_timeout":
		cfg.DialTimeout, err = positiveDuration(v)
	case "request_timeout":
		cfg.RequestTimeout, err = positiveDuration(v)
	case "delivery_timeout":
		cfg.DeliveryTimeout, err = positiveDuration(v)
	case "compression":
		cfg.Compression = strings.ToLower(v)
		_, err = compressionCodec(cfg.Compression)
	}
	if err != nil {
		var nerr *strconv.NumError
		if errors.As(err, &nerr) {
			err = nerr.Err // its message repeats the value
		}
	}
	return err
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("want a Go duration such as 10s")
	}
	if d <= 0 {
		return 0, errors.New("want a positive duration")
	}
	return d, nil
}

// validHostPort reports why hostport is no host:port.
func validHostPort(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("empty host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q", port)
	}
	return nil
}
