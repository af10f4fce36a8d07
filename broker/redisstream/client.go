package redisstream

import (
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// newClient returns a go-redis client for cfg (with defaults applied). It
// connects lazily, one connection per concurrent pipeline, and dials again
// on the next command after a connection broke.
func newClient(cfg Config) *redis.Client {
	opts := &redis.Options{
		Addr:         cfg.Addr,
		Username:     cfg.Username,
		Password:     cfg.Password,
		DB:           cfg.DB,
		ClientName:   cfg.ClientName,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		// A Publish's deadline bounds its reads and writes too.
		ContextTimeoutEnabled: true,
		// No retries inside go-redis: it would send a whole pipeline again
		// after a connection broke mid-batch, adding the entries already
		// added a second time. The relay retries just the failed events.
		MaxRetries: -1,
		// One dial per attempt: while Redis is down a publish fails at once
		// (connection refused) and the relay backs off, instead of go-redis
		// sleeping between dials.
		DialerRetries: 1,
		// Maintenance notifications are a Redis Enterprise/Cloud feature; off,
		// no connection sends the extra command.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS.Clone()
	}
	return redis.NewClient(opts)
}
