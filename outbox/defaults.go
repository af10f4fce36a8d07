package outbox

import "time"

// The defaults of RelayConfig and RetryPolicy, in one place: the relay fills
// zero fields with them, and command-line front ends show them as their
// flags' defaults.
const (
	DefaultBatchSize      = 500
	DefaultWorkers        = 1
	DefaultPollInterval   = time.Second
	DefaultPublishTimeout = 30 * time.Second
	DefaultMaxAttempts    = 10
	DefaultRetryBase      = time.Second
	DefaultRetryCap       = 5 * time.Minute
	// DefaultSource is the CloudEvents source of published events when the
	// relay is given none.
	DefaultSource = "/outbox"
)

// WithDefaults returns c with every zero field set to its default.
func (c RelayConfig) WithDefaults() RelayConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.Source == "" {
		c.Source = DefaultSource
	}
	c.Retry = c.Retry.WithDefaults()
	return c
}

// WithDefaults returns p with every zero field set to its default. A Cap
// below Base is raised to Base.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.Base <= 0 {
		p.Base = DefaultRetryBase
	}
	if p.Cap <= 0 {
		p.Cap = max(DefaultRetryCap, p.Base)
	}
	if p.Cap < p.Base {
		p.Cap = p.Base
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	return p
}
