package rabbitmq

import (
	"fmt"
	"log/slog"
	neturl "net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults of Config.
const (
	DefaultURL            = "amqp://guest:guest@localhost:5672/" //nolint:gosec // RabbitMQ's well-known guest account, which it accepts from localhost only
	DefaultExchange       = "outbox.events"
	DefaultConfirmTimeout = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultHeartbeat      = 10 * time.Second
	DefaultConnectionName = "herald"
)

// ContentType is the content type of every published message.
const ContentType = "application/cloudevents+json"

// maxShortStr is AMQP 0-9-1's limit on a short string: a routing key, an
// exchange or queue name.
const maxShortStr = 255

// Config configures a Publisher (and Subscribe). The zero value publishes to
// the durable topic exchange outbox.events on amqp://localhost:5672 as
// guest; Herald's orders service sets Exchange to orders.events.
type Config struct {
	// URL is the broker: amqp://user:password@host:port/vhost, or amqps://
	// for TLS, without query settings (ParseURL moves them into the fields
	// below). The port defaults to 5672 (amqps: 5671), the vhost to "/"
	// (write it %2F, or leave the path empty). Default DefaultURL.
	// It holds the password: String, LogValue and this package's errors
	// mask it.
	URL string
	// Exchange is the durable topic exchange that Connect declares and every
	// event is published to, with the event type as routing key. Default
	// DefaultExchange.
	Exchange string
	// Queue, when set, is a durable queue that Connect declares and binds to
	// the exchange with "#" (every event), so that events are kept from the
	// first publish on, before any consumer runs; Subscribe with FromStart
	// consumes it. Empty: Connect declares no queue (consumers declare and
	// bind their own).
	Queue string
	// Unroutable says what an event that no queue is bound for (the broker
	// returns it) counts as. Default UnroutableRetry.
	Unroutable Unroutable
	// ConfirmTimeout bounds the wait for a batch's publisher confirms even
	// when Publish's context has no deadline. Default DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
	// ConnectTimeout bounds each connection attempt (TCP, TLS and AMQP
	// handshakes) when the caller's context has no earlier deadline, and
	// every reconnect attempt. Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval proposed to the broker: a
	// dead peer is noticed after about twice as long. Default
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// ConnectionName is shown by the broker for the publisher's connection
	// (rabbitmqctl list_connections client_properties, the management UI);
	// Subscribe's connections get " subscriber" appended. Default
	// DefaultConnectionName.
	ConnectionName string
	// MaxMessageSize, when positive, fails a message whose body is larger
	// with an outbox.Permanent ErrTooLarge before it is sent. Zero leaves the
	// limit to the broker (RabbitMQ's max_message_size, 128 MiB by default):
	// the first message over it is refused by the broker, and the publisher
	// applies the limit the broker reported from then on.
	MaxMessageSize int
	// CACertFile, CertFile and KeyFile are PEM files for amqps: the
	// authorities to trust instead of the system's, and a client
	// certificate. Empty: the system's roots and no client certificate.
	CACertFile, CertFile, KeyFile string
	// Logger receives connection events (lost, reconnected, blocked by the
	// broker). Nil discards them.
	Logger *slog.Logger
}

// Unroutable is what a message that no queue is bound for counts as.
type Unroutable int

const (
	// UnroutableRetry fails an unroutable message with a retryable
	// ErrUnroutable: the relay retries it under its retry policy, so that
	// nothing is dead-lettered because a consumer had not declared its
	// queue yet (it is dead-lettered once the attempts run out).
	UnroutableRetry Unroutable = iota
	// UnroutablePermanent fails it with an outbox.Permanent ErrUnroutable:
	// the relay dead-letters it at once.
	UnroutablePermanent
	// UnroutableDrop publishes without the mandatory flag: the broker
	// acknowledges an unroutable message and discards it, as plain AMQP
	// publishing does.
	UnroutableDrop
)

var unroutableNames = [...]string{"retry", "permanent", "drop"}

func (u Unroutable) String() string {
	if u >= 0 && int(u) < len(unroutableNames) {
		return unroutableNames[u]
	}
	return "Unroutable(" + strconv.Itoa(int(u)) + ")"
}

func parseUnroutable(s string) (Unroutable, error) {
	for i, name := range unroutableNames {
		if s == name {
			return Unroutable(i), nil
		}
	}
	return 0, fmt.Errorf("want retry, permanent or drop, not %q", s)
}

func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = DefaultConfirmTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ConnectionName == "" {
		c.ConnectionName = DefaultConnectionName
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports a configuration no publish could succeed with, checked
// up front so that it is not mistaken for a failure of each event. It
// expects defaults applied.
func (c Config) validate() error {
	a, err := parseAddress(c.URL)
	if err != nil {
		return err
	}
	if err := validName("exchange", c.Exchange); err != nil {
		return err
	}
	if c.Queue != "" {
		if err := validName("queue", c.Queue); err != nil {
			return err
		}
	}
	if c.Unroutable < UnroutableRetry || c.Unroutable > UnroutableDrop {
		return fmt.Errorf("%w: unroutable %v", ErrInvalidConfig, c.Unroutable)
	}
	if c.Heartbeat < time.Second || c.Heartbeat > 65535*time.Second {
		return fmt.Errorf("%w: heartbeat %s is not between 1s and 65535s", ErrInvalidConfig, c.Heartbeat)
	}
	if c.MaxMessageSize < 0 {
		return fmt.Errorf("%w: max_message_size %d is negative", ErrInvalidConfig, c.MaxMessageSize)
	}
	if !a.tls && (c.CACertFile != "" || c.CertFile != "" || c.KeyFile != "") {
		return fmt.Errorf("%w: cacertfile, certfile and keyfile need an amqps:// URL", ErrInvalidConfig)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: certfile and keyfile go together", ErrInvalidConfig)
	}
	return nil
}

// validName checks an exchange or queue name: what the broker accepts,
// short of the reserved amq. prefix (the broker refuses to declare those).
func validName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s name", ErrInvalidConfig, what)
	case len(name) > maxShortStr:
		return fmt.Errorf("%w: %s name longer than %d bytes", ErrInvalidConfig, what, maxShortStr)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("%w: %s name %q has invalid characters", ErrInvalidConfig, what, name)
	case strings.HasPrefix(name, "amq."):
		return fmt.Errorf("%w: %s name %q: the amq. prefix is reserved by the broker", ErrInvalidConfig, what, name)
	}
	return nil
}

// String renders c as the URL ParseURL reads, with the password masked and
// the settings that differ from their defaults (Logger aside).
func (c Config) String() string {
	a, err := parseAddress(c.withDefaults().URL)
	if err != nil {
		return "(invalid rabbitmq URL)"
	}
	q := neturl.Values{}
	set := func(key, v, def string) {
		if v != "" && v != def {
			q.Set(key, v)
		}
	}
	dur := func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return d.String()
	}
	set("exchange", c.Exchange, DefaultExchange)
	set("queue", c.Queue, "")
	set("unroutable", c.Unroutable.String(), UnroutableRetry.String())
	set("confirm_timeout", dur(c.ConfirmTimeout), DefaultConfirmTimeout.String())
	set("connect_timeout", dur(c.ConnectTimeout), DefaultConnectTimeout.String())
	set("heartbeat", dur(c.Heartbeat), DefaultHeartbeat.String())
	set("connection_name", c.ConnectionName, DefaultConnectionName)
	if c.MaxMessageSize > 0 {
		q.Set("max_message_size", strconv.Itoa(c.MaxMessageSize))
	}
	set("cacertfile", c.CACertFile, "")
	set("certfile", c.CertFile, "")
	set("keyfile", c.KeyFile, "")
	s := a.redacted()
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// LogValue logs c as String does, so that the password never reaches a log.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
