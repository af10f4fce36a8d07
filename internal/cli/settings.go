package cli

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
)

// settings are the values of every flag, after the environment is applied.
type settings struct {
	// Shared by every command.
	db, broker, dataDir, httpAddr, natsAddr string
	apiToken, adminToken                    string
	logLevel, logFormat                     string
	configFile                              string

	// Relay tuning, of serve and relay.
	batchSize, workers, maxAttempts int
	pollInterval                    time.Duration
	pollOnly, moveOn                bool
	retryBase, retryCap             time.Duration
	source                          string
	relayMode, cdcSlot              string
	deleteInTx, walMessages         bool
	dropSlot                        bool

	// Process lifecycle, of serve and relay.
	noMigrate       bool
	shutdownTimeout time.Duration

	// The HTTP listeners, of serve.
	metricsAddr    string
	maxConnections int

	// The health verdict's thresholds, of serve and stats.
	healthLag         time.Duration
	healthDeadLetters int64
	healthRetryRate   float64
}

// addHealth adds the thresholds of the health verdict; the retry rate only
// where a relay runs (serve).
func (s *settings) addHealth(fs *pflag.FlagSet, relay bool) {
	d := outbox.HealthThresholds{}.WithDefaults()
	fs.DurationVar(&s.healthLag, "health-max-lag", d.Lag, "the health verdict is failing when the oldest pending event is older than this")
	fs.Int64Var(&s.healthDeadLetters, "health-max-dead-letters", d.DeadLetters, "the health verdict is degraded above this many open dead letters")
	if relay {
		fs.Float64Var(&s.healthRetryRate, "health-max-retry-rate", d.RetryRate, "the health verdict is degraded when a larger share of recent publish attempts failed (0 to 1)")
	}
}

// addShared adds the settings every command shares: logging and the
// settings file.
func (s *settings) addShared(fs *pflag.FlagSet) {
	fs.StringVar(&s.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&s.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&s.configFile, "config", "", describeConfig)
}

// Flag groups: each command gets the groups it uses, so that its --help
// lists only the flags that change what it does.
const (
	useDatabase = 1 << iota // --db, --data-dir
	useBroker               // --broker, --embedded-nats-addr, --data-dir
	useAPI                  // --http-addr, --api-token, --admin-token
)

// addGroups adds the flags of the groups in use.
func (s *settings) addGroups(fs *pflag.FlagSet, use int) {
	if use&useDatabase != 0 {
		fs.StringVar(&s.db, "db", "", "database URL: sqlite://PATH, postgres://USER@HOST:PORT/DB, or a key=value connection string (default sqlite://<data dir>/herald.db)")
	}
	if use&useBroker != 0 {
		fs.StringVar(&s.broker, "broker", app.DefaultBrokerURL, "broker URL: embedded (a NATS server in the process), nats://HOST:PORT, kafka://HOST:PORT, amqp://USER:PASS@HOST:PORT/VHOST, redis://HOST:PORT/DB, http(s):// (webhook), or log (standard output)")
		fs.StringVar(&s.natsAddr, "embedded-nats-addr", app.DefaultEmbeddedNATSAddr, "address of the embedded NATS server")
	}
	if use&(useDatabase|useBroker) != 0 {
		fs.StringVar(&s.dataDir, "data-dir", app.DefaultDataDir, "data directory: the default SQLite file and the embedded NATS store")
	}
	if use&useAPI != 0 {
		fs.StringVar(&s.httpAddr, "http-addr", app.DefaultHTTPAddr, "address the HTTP API listens on")
		fs.StringVar(&s.apiToken, "api-token", "", "bearer token of the order routes (none: listen on loopback only)")
		fs.StringVar(&s.adminToken, "admin-token", "", "bearer token of the outbox and admin routes (none: listen on loopback only)")
	}
}

// addRelay adds the relay tuning flags.
func (s *settings) addRelay(fs *pflag.FlagSet) {
	fs.IntVar(&s.batchSize, "batch-size", outbox.DefaultBatchSize, "events the relay claims per batch")
	fs.IntVar(&s.workers, "workers", outbox.DefaultWorkers, "concurrent claim-and-publish loops of the relay")
	fs.DurationVar(&s.pollInterval, "poll-interval", outbox.DefaultPollInterval, "how often the relay looks for events when no wake-up arrives")
	fs.BoolVar(&s.pollOnly, "poll-only", false, "never LISTEN for wake-ups, only poll (for connection poolers that break LISTEN)")
	fs.IntVar(&s.maxAttempts, "max-attempts", outbox.DefaultMaxAttempts, "publish attempts before an event is dead-lettered")
	fs.DurationVar(&s.retryBase, "retry-base", outbox.DefaultRetryBase, "delay before the first retry; it doubles with each failure")
	fs.DurationVar(&s.retryCap, "retry-cap", outbox.DefaultRetryCap, "longest delay between retries")
	fs.BoolVar(&s.moveOn, "move-on-past-dead-letters", false, "let an aggregate's later events flow while an earlier one is dead-lettered")
	fs.StringVar(&s.source, "source", ordersvc.EventSource, "CloudEvents source of the published events")
}

// addMode adds the relay's mode and its replication slot (serve, relay).
func (s *settings) addMode(fs *pflag.FlagSet) {
	fs.StringVar(&s.relayMode, "mode", app.RelayModePoll, "how the relay finds events: poll (claim rows from the outbox table) or cdc "+
		"(read them from PostgreSQL's write-ahead log through a replication slot; needs wal_level = logical and a role with REPLICATION)")
	fs.StringVar(&s.cdcSlot, "cdc-slot", "", "replication slot and publication of --mode cdc (default herald_order_outbox; "+
		"slots belong to the whole server: give each database its own)")
}

// addWriters adds the settings of the orders service's writes (serve).
func (s *settings) addWriters(fs *pflag.FlagSet) {
	fs.BoolVar(&s.deleteInTx, "delete-in-tx", false, "delete each event's row in the transaction that writes it, so the outbox table never grows "+
		"(only with --mode cdc, which reads the inserts from the write-ahead log)")
	fs.BoolVar(&s.walMessages, "wal-messages", false, "write each event as a logical decoding message in the write-ahead log instead of a row: "+
		"the cheapest write, and nothing in the table (only with --mode cdc; not with --delete-in-tx)")
}

// addLifecycle adds the flags of the long-running commands.
func (s *settings) addLifecycle(fs *pflag.FlagSet) {
	fs.BoolVar(&s.noMigrate, "no-migrate", false, "do not apply schema migrations at start (fail if any is pending)")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", app.DefaultShutdownTimeout, "how long a stop waits for HTTP requests in flight")
}

// addHTTP adds the flags of the HTTP listeners (serve).
func (s *settings) addHTTP(fs *pflag.FlagSet) {
	fs.StringVar(&s.metricsAddr, "metrics-addr", "", "address of a listener of its own for /metrics, without authentication; "+
		"then the API does not serve /metrics (none: /metrics is on --http-addr)")
	fs.IntVar(&s.maxConnections, "max-connections", app.DefaultMaxConnections, "most open connections of the HTTP API; "+
		"more wait until one closes")
}

// config returns the app configuration of the settings.
func (c *cli) config() app.Config {
	s := &c.s
	return app.Config{
		DatabaseURL:      s.db,
		BrokerURL:        s.broker,
		DataDir:          s.dataDir,
		HTTPAddr:         s.httpAddr,
		MetricsAddr:      s.metricsAddr,
		MaxConnections:   s.maxConnections,
		EmbeddedNATSAddr: s.natsAddr,
		APIToken:         s.apiToken,
		AdminToken:       s.adminToken,
		Relay: outbox.RelayConfig{
			BatchSize:    s.batchSize,
			Workers:      s.workers,
			PollInterval: s.pollInterval,
			PollOnly:     s.pollOnly,
			Retry: outbox.RetryPolicy{
				Base:        s.retryBase,
				Cap:         s.retryCap,
				MaxAttempts: s.maxAttempts,
			},
			MoveOnPastDeadLetters: s.moveOn,
			Source:                s.source,
		},
		RelayMode:       s.relayMode,
		CDCSlot:         s.cdcSlot,
		DeleteInTx:      s.deleteInTx,
		WALMessages:     s.walMessages,
		NoMigrate:       s.noMigrate,
		ShutdownTimeout: s.shutdownTimeout,
		Logger:          c.log,
		EventLog:        c.stdout,
		Version:         buildVersion().Version,
		Health:          outbox.HealthThresholds{Lag: s.healthLag, DeadLetters: s.healthDeadLetters, RetryRate: s.healthRetryRate},
		LookupEnv: func(k string) (string, bool) {
			v, ok := c.env[k]
			return v, ok
		},
	}
}
