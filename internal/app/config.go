// Package app wires Herald together: it opens the database and the broker
// named by their URLs, migrates the schema, and runs the relay and the HTTP
// API with a graceful stop. The command line (internal/cli) is a thin layer
// over it, and tests use it without the command line.
package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
)

// Defaults of Config, shown by --help.
const (
	DefaultDataDir          = "./herald-data"
	DefaultBrokerURL        = "embedded"
	DefaultHTTPAddr         = "127.0.0.1:8080"
	DefaultEmbeddedNATSAddr = "127.0.0.1:4223"
	DefaultShutdownTimeout  = 30 * time.Second
	// DatabaseFile is the SQLite file under the data directory used when no
	// database URL is given.
	DatabaseFile = "herald.db"
)

// Config is everything a Herald process is configured with. The command
// line fills it from flags and HERALD_* variables; Validate checks it before
// anything is started.
type Config struct {
	// DatabaseURL is sqlite://PATH or postgres://… (postgresql:// too).
	// Empty means sqlite://<DataDir>/herald.db.
	DatabaseURL string
	// BrokerURL is embedded, nats://HOST:PORT[,…] or log. Empty means embedded.
	BrokerURL string
	// DataDir holds the default SQLite file and the embedded NATS store.
	DataDir string
	// HTTPAddr is the API's listen address, host:port.
	HTTPAddr string
	// MetricsAddr, when set, is where /metrics is served, alone and without
	// authentication, instead of on the API's listener. Empty keeps it on
	// the API's listener.
	MetricsAddr string
	// Health tunes the verdict of GET /api/v1/outbox/health; zero fields
	// take outbox.HealthThresholds' defaults.
	Health outbox.HealthThresholds
	// MaxConnections caps the API listener's open connections; more wait
	// in the listen backlog until one closes. Zero means
	// DefaultMaxConnections.
	MaxConnections int
	// EmbeddedNATSAddr is where the embedded NATS server listens (and where
	// herald tail finds it).
	EmbeddedNATSAddr string
	// APIToken and AdminToken are the bearer tokens of the order routes and
	// of the outbox and UI routes. With neither set the API listens on
	// loopback only.
	APIToken   string
	AdminToken string

	// Relay tunes the relay; Source is the CloudEvents source.
	Relay outbox.RelayConfig
	// RelayMode is how the relay finds events: RelayModePoll (the default)
	// claims rows from the outbox table; RelayModeCDC reads them from
	// PostgreSQL's write-ahead log through a replication slot (package
	// pgcdc).
	RelayMode string
	// CDCSlot names the replication slot (and publication) of RelayModeCDC;
	// empty means herald_order_outbox.
	CDCSlot string
	// DeleteInTx makes the orders service delete each event's row in its
	// own transaction, so that the outbox table never grows; only with
	// RelayModeCDC, which reads the inserts from the write-ahead log.
	DeleteInTx bool
	// WALMessages makes the orders service write each event as a logical
	// decoding message in the write-ahead log instead of a row: the
	// cheapest write, and nothing in the table; only with RelayModeCDC.
	WALMessages bool
	// NoMigrate skips applying migrations at start.
	NoMigrate bool
	// ShutdownTimeout bounds how long a graceful stop waits for in-flight
	// HTTP requests.
	ShutdownTimeout time.Duration

	// Logger receives the process's log; nil discards it.
	Logger *slog.Logger
	// EventLog is where the log broker writes events; nil means standard output.
	EventLog io.Writer
	// Version is reported by the API (build information).
	Version string
	// LookupEnv reads the broker settings that live in the environment
	// (HERALD_WEBHOOK_SECRET and the webhook's others); nil means
	// os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// TracerProvider receives the spans of the HTTP requests, of the orders'
	// write transactions and of the relay's batches. When nil, Start sets
	// one up from the standard OTEL_* variables (see README's Tracing):
	// tracing is off unless they name an OTLP endpoint. OpenDatabase and
	// the operator commands never trace.
	TracerProvider trace.TracerProvider
}

// UsageError is a configuration mistake of the caller (a bad URL, address or
// value), as opposed to a failure at run time. The command line exits with
// status 2 for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// usagef returns a *UsageError.
func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// IsUsageError reports whether err is, or wraps, a *UsageError.
func IsUsageError(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

func (c Config) withDefaults() Config {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.BrokerURL == "" {
		c.BrokerURL = DefaultBrokerURL
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.EmbeddedNATSAddr == "" {
		c.EmbeddedNATSAddr = DefaultEmbeddedNATSAddr
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	c.Relay = RelayDefaults(c.Relay)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks every setting without touching the network or the disk.
// Each bad one is reported as a *UsageError.
func (c Config) Validate() error {
	return errors.Join(c.ValidateDatabase(), c.ValidateBroker(), c.ValidateHTTP(), c.ValidateRelay(), c.ValidateHealth())
}

// ValidateHealth checks the health verdict's thresholds: zero means the
// default; negative values, and a retry rate outside 0–1, are refused.
func (c Config) ValidateHealth() error {
	h := c.Health
	switch {
	case h.Lag < 0:
		return usagef("--health-max-lag must not be negative, got %s", h.Lag)
	case h.DeadLetters < 0:
		return usagef("--health-max-dead-letters must not be negative, got %d", h.DeadLetters)
	case !(h.RetryRate >= 0 && h.RetryRate <= 1): // NaN too
		return usagef("--health-max-retry-rate must be between 0 and 1, got %v", h.RetryRate)
	}
	return nil
}

// ValidateDatabase checks the database URL.
func (c Config) ValidateDatabase() error {
	c = c.withDefaults()
	_, err := ParseDatabaseURL(c.DatabaseURL, c.DataDir)
	return err
}

// ValidateBroker checks the broker URL and the embedded NATS address.
func (c Config) ValidateBroker() error {
	c = c.withDefaults()
	spec, err := ParseBrokerURL(c.BrokerURL)
	if err != nil {
		return err
	}
	if err := checkListenAddr("--embedded-nats-addr", c.EmbeddedNATSAddr, 1); err != nil {
		return err
	}
	if spec.Kind == BrokerEmbedded {
		// The embedded server has no authentication: on another interface
		// anyone could publish forged events or delete the stream.
		host, _, _ := net.SplitHostPort(c.EmbeddedNATSAddr)
		if !isLoopback(host) {
			return &UsageError{Err: fmt.Errorf("--embedded-nats-addr %q: the embedded NATS server has no authentication "+
				"and listens on loopback only; to share the broker with other machines run a NATS server and "+
				"use --broker nats://HOST:PORT", c.EmbeddedNATSAddr)}
		}
	}
	return nil
}

// isLoopback reports whether host names this machine only.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.WithZone("").Unmap().IsLoopback()
}

// ValidateHTTP checks the HTTP address, and that it is not reachable from
// other machines unless a token is set.
func (c Config) ValidateHTTP() error {
	c = c.withDefaults()
	if err := checkListenAddr("--http-addr", c.HTTPAddr, 0); err != nil {
		return err
	}
	if err := httpapi.CheckListenAddr(c.HTTPAddr, c.APIToken != "" || c.AdminToken != ""); err != nil {
		return &UsageError{Err: err}
	}
	return c.validateListeners()
}

// ValidateRelay checks the relay tuning (zero fields mean the defaults) and
// the shutdown timeout.
func (c Config) ValidateRelay() error {
	if c.ShutdownTimeout < 0 {
		return usagef("--shutdown-timeout must be positive, got %s", c.ShutdownTimeout)
	}
	if err := c.ValidateRelayMode(); err != nil {
		return err
	}
	return ValidateRelayConfig(c.withDefaults().Relay)
}

// Relay modes (Config.RelayMode).
const (
	RelayModePoll = "poll"
	RelayModeCDC  = "cdc"
)

// ValidateRelayMode checks RelayMode, CDCSlot, DeleteInTx and WALMessages:
// CDC needs PostgreSQL, and events that only the write-ahead log holds are
// seen only by CDC.
func (c Config) ValidateRelayMode() error {
	if c.DeleteInTx && c.WALMessages {
		return usagef("--delete-in-tx and --wal-messages exclude each other: an event is written as a row (deleted or not) or as a message")
	}
	switch c.RelayMode {
	case "", RelayModePoll:
		if c.DeleteInTx {
			return usagef("--delete-in-tx needs --mode cdc: the polling relay never sees an event whose row was deleted in its transaction")
		}
		if c.WALMessages {
			return usagef("--wal-messages needs --mode cdc: the polling relay never sees an event written as a message")
		}
		return nil
	case RelayModeCDC:
	default:
		return usagef("--mode must be poll or cdc, got %q", c.RelayMode)
	}
	spec, err := ParseDatabaseURL(c.DatabaseURL, c.withDefaults().DataDir)
	if err != nil {
		return err
	}
	if spec.Kind != Postgres {
		return usagef("--mode cdc needs PostgreSQL (--db postgres://…): it reads the write-ahead log")
	}
	if c.CDCSlot != "" && !validSlotName(c.CDCSlot) {
		return usagef("--cdc-slot must be lower-case letters, digits and underscores (a letter first), at most 63 bytes, got %q", c.CDCSlot)
	}
	return nil
}

func validSlotName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// RelayDefaults fills the zero fields of r with the engine's defaults
// (outbox.Default…) and the orders' CloudEvents source. Only zero fields:
// a negative value stays, for Validate to refuse.
func RelayDefaults(r outbox.RelayConfig) outbox.RelayConfig {
	if r.BatchSize == 0 {
		r.BatchSize = outbox.DefaultBatchSize
	}
	if r.Workers == 0 {
		r.Workers = outbox.DefaultWorkers
	}
	if r.PollInterval == 0 {
		r.PollInterval = outbox.DefaultPollInterval
	}
	if r.Retry.MaxAttempts == 0 {
		r.Retry.MaxAttempts = outbox.DefaultMaxAttempts
	}
	if r.Retry.Base == 0 {
		r.Retry.Base = outbox.DefaultRetryBase
	}
	if r.Retry.Cap == 0 {
		r.Retry.Cap = max(outbox.DefaultRetryCap, r.Retry.Base)
	}
	if r.Source == "" {
		r.Source = ordersvc.EventSource
	}
	return r
}

// Limits of the relay tuning settings.
const (
	MaxBatchSize = 10_000
	MaxWorkers   = 256
)

// ValidateRelayConfig checks relay tuning as a user gave it: zero values
// are refused here (the command line always passes its defaults).
func ValidateRelayConfig(r outbox.RelayConfig) error {
	switch {
	case r.BatchSize < 1 || r.BatchSize > MaxBatchSize:
		return usagef("--batch-size must be between 1 and %d, got %d", MaxBatchSize, r.BatchSize)
	case r.Workers < 1 || r.Workers > MaxWorkers:
		return usagef("--workers must be between 1 and %d, got %d", MaxWorkers, r.Workers)
	case r.PollInterval <= 0:
		return usagef("--poll-interval must be positive, got %s", r.PollInterval)
	case r.Retry.MaxAttempts < 1:
		return usagef("--max-attempts must be at least 1, got %d", r.Retry.MaxAttempts)
	case r.Retry.Base <= 0:
		return usagef("--retry-base must be positive, got %s", r.Retry.Base)
	case r.Retry.Cap < r.Retry.Base:
		return usagef("--retry-cap (%s) must not be below --retry-base (%s)", r.Retry.Cap, r.Retry.Base)
	}
	if err := checkSource(r.Source); err != nil {
		return err
	}
	return nil
}

// checkSource checks a CloudEvents source: a non-empty URI-reference.
func checkSource(s string) error {
	if s == "" {
		return usagef("--source must not be empty")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return usagef("--source %q must be a URI reference without spaces", s)
	}
	if _, err := url.Parse(s); err != nil {
		return usagef("--source %q is not a URI reference: %v", s, err)
	}
	return nil
}

// checkListenAddr checks a host:port listen address whose port is at least
// minPort (0 lets the system choose one).
func checkListenAddr(flag, addr string, minPort int) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("%s %q is not a host:port address: %v", flag, addr, err)
	}
	if strings.ContainsAny(host, " /") {
		return usagef("%s %q has an invalid host", flag, addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < minPort || n > 65535 {
		return usagef("%s %q: port must be a number between %d and 65535", flag, addr, minPort)
	}
	return nil
}

// DatabaseKind is the database engine a URL selects.
type DatabaseKind int

// Database kinds.
const (
	SQLite DatabaseKind = iota + 1
	Postgres
)

func (k DatabaseKind) String() string {
	switch k {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return "unknown"
}

// DatabaseSpec is a parsed database URL.
type DatabaseSpec struct {
	Kind DatabaseKind
	// URL is the PostgreSQL connection string.
	URL string
	// Path is the SQLite file (possibly with ?query settings).
	Path string
}

// DefaultDatabaseURL is the database used when none is given:
// sqlite://<dataDir>/herald.db.
func DefaultDatabaseURL(dataDir string) string {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	return "sqlite://" + filepath.ToSlash(filepath.Join(dataDir, DatabaseFile))
}

// ParseDatabaseURL parses raw, or the default under dataDir when raw is
// empty. It accepts sqlite://PATH (sqlite:///abs/path for an absolute path,
// sqlite://rel/path for a relative one), sqlite:PATH, postgres:// or
// postgresql:// connection URLs, and PostgreSQL key=value connection strings
// (host=… port=… dbname=…), all that pgx accepts. No message shows a
// password (RedactURL).
func ParseDatabaseURL(raw, dataDir string) (DatabaseSpec, error) {
	if raw == "" {
		raw = DefaultDatabaseURL(dataDir)
	}
	lower := strings.ToLower(raw)
	switch {
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		// pgx takes the scheme in lower case only.
		scheme, rest, _ := strings.Cut(raw, "://")
		raw = strings.ToLower(scheme) + "://" + rest
		if _, err := pgxpool.ParseConfig(raw); err != nil {
			return DatabaseSpec{}, usagef("--db: invalid PostgreSQL URL %s: %s", RedactURL(raw), parseProblem(err, raw))
		}
		return DatabaseSpec{Kind: Postgres, URL: raw}, nil
	case isKeyValueDSN(raw):
		if _, err := pgxpool.ParseConfig(raw); err != nil {
			return DatabaseSpec{}, usagef("--db: invalid PostgreSQL connection string %s: %s", RedactURL(raw), parseProblem(err, raw))
		}
		return DatabaseSpec{Kind: Postgres, URL: raw}, nil
	case strings.HasPrefix(lower, "sqlite:"):
		path := raw[len("sqlite:"):]
		path = strings.TrimPrefix(path, "//")
		if path == "" || strings.HasPrefix(path, "?") {
			return DatabaseSpec{}, usagef("--db %q: no database file; use sqlite://PATH, e.g. sqlite://./herald-data/herald.db", raw)
		}
		if p := strings.ToLower(path); p == ":memory:" || strings.HasPrefix(p, "file:") || strings.Contains(p, "mode=memory") {
			return DatabaseSpec{}, usagef("--db %q: in-memory and file: SQLite databases are not supported; use sqlite://PATH to a file", raw)
		}
		return DatabaseSpec{Kind: SQLite, Path: path}, nil
	}
	return DatabaseSpec{}, usagef("--db %q: unsupported database URL; use sqlite://PATH, postgres://USER@HOST:PORT/DB or a key=value connection string", RedactURL(raw))
}

// BrokerKind is the broker a URL selects.
type BrokerKind int

// Broker kinds.
const (
	BrokerEmbedded BrokerKind = iota + 1
	BrokerNATS
	BrokerLog
	BrokerKafka
	BrokerRabbitMQ
	BrokerRedis
	BrokerWebhook
)

func (k BrokerKind) String() string {
	switch k {
	case BrokerEmbedded:
		return "embedded"
	case BrokerNATS:
		return "nats"
	case BrokerLog:
		return "log"
	case BrokerKafka:
		return "kafka"
	case BrokerRabbitMQ:
		return "rabbitmq"
	case BrokerRedis:
		return "redis"
	case BrokerWebhook:
		return "webhook"
	}
	return "unknown"
}

// BrokerSpec is a parsed broker URL.
type BrokerSpec struct {
	Kind BrokerKind
	URL  string // the NATS server list, for BrokerNATS
}

// ParseBrokerURL parses a --broker value: embedded, log, or nats://HOST:PORT
// (tls:// too, and comma-separated lists of either).
func ParseBrokerURL(raw string) (BrokerSpec, error) {
	s := strings.TrimSpace(raw)
	switch strings.ToLower(s) {
	case "", "embedded":
		return BrokerSpec{Kind: BrokerEmbedded}, nil
	case "log":
		return BrokerSpec{Kind: BrokerLog}, nil
	}
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return BrokerSpec{}, usagef("--broker %q: unknown broker; use embedded, log, nats://, kafka://, amqp://, redis:// or http(s):// (docs/brokers.md)", RedactURL(raw))
	}
	scheme = strings.ToLower(scheme)
	if ext, ok := externalBrokers[scheme]; ok {
		if err := ext.parse(s); err != nil {
			return BrokerSpec{}, usagef("--broker %s: %v", RedactURL(raw), err)
		}
		return BrokerSpec{Kind: ext.kind, URL: s}, nil
	}
	if scheme != "nats" && scheme != "tls" {
		return BrokerSpec{}, usagef("--broker %q: unknown broker scheme %q; use embedded, log, nats://, kafka://, amqp://, redis:// or http(s):// (docs/brokers.md)", RedactURL(raw), scheme)
	}
	for part := range strings.SplitSeq(s, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			return BrokerSpec{}, usagef("--broker %s: invalid NATS URL: %s", RedactURL(raw), parseProblem(innermost(err), raw))
		}
		if u.Scheme != "nats" && u.Scheme != "tls" || u.Host == "" {
			return BrokerSpec{}, usagef("--broker %q: want nats://HOST:PORT", RedactURL(strings.TrimSpace(part)))
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return BrokerSpec{}, usagef("--broker %q: port must be a number between 1 and 65535", RedactURL(strings.TrimSpace(part)))
			}
		}
	}
	return BrokerSpec{Kind: BrokerNATS, URL: s}, nil
}
