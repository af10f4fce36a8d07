package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultTopic             = "outbox.events"
	DefaultBroker            = "127.0.0.1:9092"
	DefaultClientID          = "herald"
	DefaultPartitions        = 3
	DefaultReplicationFactor = -1 // the broker's default.replication.factor
	DefaultDialTimeout       = 10 * time.Second
	DefaultRequestTimeout    = 10 * time.Second
	DefaultDeliveryTimeout   = 30 * time.Second
)

// Header names of every published record.
const (
	// HeaderContentType is application/cloudevents+json: the value is a
	// CloudEvents document in structured mode.
	HeaderContentType = "content-type"
	// HeaderEventID is the event id, so that a consumer can drop
	// duplicates without parsing the value.
	HeaderEventID = "ce_id"
	// HeaderEventType is the event type, so that a consumer can filter
	// without parsing the value.
	HeaderEventType = "ce_type"
)

// ContentType is the content-type header of every published record.
const ContentType = "application/cloudevents+json"

// SASL mechanisms.
const (
	MechanismPlain       = "plain"
	MechanismScramSHA256 = "scram-sha-256"
	MechanismScramSHA512 = "scram-sha-512"
)

// Config configures a Publisher (and Subscribe). The zero value publishes to
// topic outbox.events on 127.0.0.1:9092 in plain text, creating the topic
// with 3 partitions when it is missing; Herald's orders service sets its own
// topic.
type Config struct {
	// Brokers are the seed brokers, host:port; default DefaultBroker.
	Brokers []string
	// Topic receives every event; default DefaultTopic.
	Topic string
	// NoCreateTopic makes a missing topic an error (Connect fails; a topic
	// deleted later fails publishes permanently) instead of creating it.
	NoCreateTopic bool
	// Partitions and ReplicationFactor are used only to create the topic.
	// Partitions defaults to DefaultPartitions; a ReplicationFactor of 0
	// or -1 leaves it to the broker's default.replication.factor.
	Partitions        int32
	ReplicationFactor int16
	// ClientID is the client.id the brokers see; default DefaultClientID.
	ClientID string
	// SASL authenticates the connections when its Mechanism is set.
	SASL SASL
	// TLS encrypts the connections; TLSCAFile (PEM) replaces the system's
	// roots and TLSInsecureSkipVerify skips the server certificate check
	// (tests only). Either one implies TLS.
	TLS                   bool
	TLSCAFile             string
	TLSInsecureSkipVerify bool
	// DialTimeout bounds opening one connection; default DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout is how long a broker may take to answer one produce
	// request (it waits for the in-sync replicas); default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// DeliveryTimeout bounds how long a record waits to be sent, across
	// the client's retries, even when Publish's context has no deadline;
	// default DefaultDeliveryTimeout. A record already sent is never
	// given up on before the broker answers (see Publish).
	DeliveryTimeout time.Duration
	// Compression of the record batches: "" or "none" (the default),
	// "gzip", "snappy", "lz4" or "zstd". The brokers' size limit applies
	// to the compressed batch, the client's check to the uncompressed
	// record, so with compression a record may be refused that the broker
	// would have taken.
	Compression string
	// Logger receives the client's connection events and warnings. Nil
	// discards them.
	Logger *slog.Logger
}

// SASL is the authentication of Config. Its String hides the password.
type SASL struct {
	Mechanism string // MechanismPlain, MechanismScramSHA256 or MechanismScramSHA512
	User      string
	Password  string
}

// String names the mechanism and user, never the password.
func (s SASL) String() string {
	if s.Mechanism == "" {
		return "none"
	}
	return s.Mechanism + " as " + s.User
}

// GoString keeps the password out of %#v too.
func (s SASL) GoString() string {
	return fmt.Sprintf("kafka.SASL{Mechanism:%q, User:%q, Password:\"xxxxx\"}", s.Mechanism, s.User)
}

// String describes c without its password, for logs.
func (c Config) String() string {
	c = c.withDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "kafka brokers=%s topic=%s create_topic=%t", strings.Join(c.Brokers, ","), c.Topic, !c.NoCreateTopic)
	fmt.Fprintf(&b, " client_id=%s sasl=%s tls=%t", c.ClientID, c.SASL, c.tlsEnabled())
	return b.String()
}

func (c Config) withDefaults() Config {
	if len(c.Brokers) == 0 {
		c.Brokers = []string{DefaultBroker}
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor <= 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) tlsEnabled() bool {
	return c.TLS || c.TLSCAFile != "" || c.TLSInsecureSkipVerify
}

// ErrInvalidConfig wraps every reason a Config is refused.
var ErrInvalidConfig = errors.New("kafka: invalid configuration")

// topicName is what Kafka accepts as a topic name.
var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// validate reports a configuration no publish could succeed with, checked
// before connecting so that it is not mistaken for a broker's refusal.
func (c Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	for _, b := range c.Brokers {
		if err := validHostPort(b); err != nil {
			return bad("broker %q: %v", b, err)
		}
	}
	if !topicName.MatchString(c.Topic) || c.Topic == "." || c.Topic == ".." {
		return bad("topic %q: a topic name is 1 to 249 of a-z A-Z 0-9 . _ -", c.Topic)
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL.User != "" || c.SASL.Password != "" {
			return bad("a SASL user is given without a mechanism (sasl_mechanism=plain, scram-sha-256 or scram-sha-512)")
		}
	case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		if c.SASL.User == "" {
			return bad("SASL %s needs a user (kafka://user:password@host:port)", c.SASL.Mechanism)
		}
	default:
		return bad("SASL mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism)
	}
	if _, err := compressionCodec(c.Compression); err != nil {
		return bad("%v", err)
	}
	if strings.ContainsAny(c.ClientID, "\x00\r\n") {
		return bad("client id %q has control characters", c.ClientID)
	}
	return nil
}
