package redisstream

import (
	"log/slog"
	"sync"
	"sync/atomic"
)

// health logs the publisher's connection events: the first failure of a
// kind (connection lost, WRONGTYPE, READONLY...) and the first success after
// failures, not every failed batch, so that an outage the relay keeps
// retrying through shows as two log lines.
type health struct {
	log  *slog.Logger
	addr string

	failing atomic.Bool // fast path for ok
	mu      sync.Mutex
	kind    string // the failure last logged; "" while healthy
}

func newHealth(log *slog.Logger, addr string) *health {
	return &health{log: log, addr: addr}
}

// fail records a failure of the given kind ("unavailable" or a Redis error
// code) and logs it unless the last failure was of the same kind.
func (h *health) fail(kind string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failing.Store(true)
	if h.kind == kind {
		return
	}
	h.kind = kind
	switch kind {
	case "unavailable":
		h.log.Warn("redisstream: connection to Redis lost; the client dials again on the next publish",
			"addr", h.addr, "err", err)
	case "WRONGTYPE", "NOAUTH", "WRONGPASS", "NOPERM":
		h.log.Error("redisstream: Redis refuses every publish until its configuration is fixed",
			"addr", h.addr, "err", err)
	default:
		h.log.Warn("redisstream: Redis refuses publishes", "addr", h.addr, "err", err)
	}
}

// ok records a successful publish, logging the recovery after failures.
func (h *health) ok() {
	if !h.failing.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kind != "" {
		h.log.Info("redisstream: publishing to Redis again", "addr", h.addr)
	}
	h.kind = ""
	h.failing.Store(false)
}
