package redisstream

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Defaults of Config.
const (
	DefaultAddr         = "localhost:6379"
	DefaultStream       = "outbox.events"
	DefaultClientName   = "herald"
	DefaultDialTimeout  = 5 * time.Second
	DefaultReadTimeout  = 5 * time.Second
	DefaultWriteTimeout = 5 * time.Second
	// DefaultMaxMessageBytes is Redis's own default proto-max-bulk-len,
	// assumed when the server does not say (CONFIG GET refused).
	DefaultMaxMessageBytes = 512 << 20
)

// Config configures a Publisher (and Subscribe). The zero value publishes to
// stream outbox.events on localhost:6379, database 0, without trimming.
// ParseURL builds one from a redis:// or rediss:// URL.
type Config struct {
	Addr     string // host:port; default DefaultAddr
	Username string // ACL user; empty: the default user
	// Password is sent with AUTH. It never appears in String, an error or a
	// log line.
	Password string
	DB       int         // database number
	TLS      *tls.Config // non-nil: connect over TLS (rediss://)

	Stream string // the stream's key; default DefaultStream
	// MaxLen, when positive, trims the stream to about MaxLen entries on
	// every XADD (MAXLEN ~ MaxLen), dropping the oldest. Zero keeps
	// everything.
	MaxLen int64
	// ClientName is set on every connection (CLIENT SETNAME), so that an
	// operator finds the publisher in CLIENT LIST; default
	// DefaultClientName.
	ClientName string

	// DialTimeout bounds a connection attempt; ReadTimeout and WriteTimeout
	// bound reading a batch's replies and writing its commands (a
	// Publish's context deadline, when earlier, bounds them too).
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// MaxMessageBytes is the longest body the publisher sends; a longer one
	// fails with ErrTooLarge, Permanent. Zero: the server's
	// proto-max-bulk-len, read by Connect, or DefaultMaxMessageBytes when
	// the server does not tell.
	MaxMessageBytes int64

	// Logger receives connection events (connection lost, reconnected,
	// configuration errors). Nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.ClientName == "" {
		c.ClientName = DefaultClientName
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports a configuration no publish could succeed with; checked
// up front so that it is not mistaken for a failure of each event.
func (c Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("redisstream: address %q: want host:port", c.Addr)
	}
	switch {
	case c.DB < 0:
		return fmt.Errorf("redisstream: database %d: want 0 or more", c.DB)
	case c.MaxLen < 0:
		return fmt.Errorf("redisstream: maxlen %d: want 0 (no trimming) or more", c.MaxLen)
	case c.MaxMessageBytes < 0:
		return fmt.Errorf("redisstream: max_message_bytes %d: want 0 (ask the server) or more", c.MaxMessageBytes)
	case c.DialTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0:
		return errors.New("redisstream: a negative timeout")
	}
	return validClientName(c.ClientName)
}

// validClientName applies CLIENT SETNAME's rule: printable ASCII, no spaces.
func validClientName(name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] < '!' || name[i] > '~' {
			return fmt.Errorf("redisstream: client name %q: want printable ASCII without spaces", name)
		}
	}
	return nil
}

// String renders c as a URL that ParseURL reads back, with the password
// replaced by xxxxx.
func (c Config) String() string {
	u := url.URL{Scheme: "redis", Host: c.Addr, Path: "/" + strconv.Itoa(c.DB)}
	if c.TLS != nil {
		u.Scheme = "rediss"
	}
	switch {
	case c.Password != "":
		u.User = url.UserPassword(c.Username, "xxxxx")
	case c.Username != "":
		u.User = url.UserPassword(c.Username, "") // user:@, as ParseURL wants
	}
	q := url.Values{}
	if c.Stream != "" {
		q.Set("stream", c.Stream)
	}
	if c.MaxLen != 0 {
		q.Set("maxlen", strconv.FormatInt(c.MaxLen, 10))
	}
	if c.ClientName != "" {
		q.Set("client_name", c.ClientName)
	}
	for name, d := range map[string]time.Duration{
		"dial_timeout": c.DialTimeout, "read_timeout": c.ReadTimeout, "write_timeout": c.WriteTimeout,
	} {
		if d != 0 {
			q.Set(name, d.String())
		}
	}
	if c.MaxMessageBytes != 0 {
		q.Set("max_message_bytes", strconv.FormatInt(c.MaxMessageBytes, 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// GoString keeps the password out of %#v too.
func (c Config) GoString() string { return "redisstream.Config(" + c.String() + ")" }

// MarshalJSON renders c as String does, so that a configuration dump
// keeps the password out too.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// LogValue keeps the password out of structured logs (slog's JSON handler
// would otherwise print every field).
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
