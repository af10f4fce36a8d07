package redisstream_test

import (
	"testing"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/redisstream"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// Redis keeps what it acknowledged (Persistent) and drops no duplicates.
var features = publishertest.Features{Dedup: false, Persistent: true}

// TestConformanceLocal runs the suite against the machine's Redis, each
// instance on a stream and a client name of its own. Disconnect kills the
// publisher's connections from the server's side (CLIENT KILL), which
// restarts nothing shared.
//
// Poison is nil here: the only thing Redis refuses in a valid event is a
// body over its proto-max-bulk-len, 512 MiB on the machine's server, too
// big to build in a test; and lowering that shared setting could break
// another test running meanwhile. TestConformancePrivate covers it.
func TestConformanceLocal(t *testing.T) {
	publishertest.Run(t, harness(func(t *testing.T) (string, func(t *testing.T, cfg redisstream.Config)) {
		return localAddr(), func(t *testing.T, cfg redisstream.Config) {
			if killClients(t, localAddr(), cfg.ClientName) == 0 {
				t.Fatalf("no connection named %s to kill", cfg.ClientName)
			}
		}
	}, nil))
}

// TestConformancePrivate runs the suite with a redis-server of each
// instance's own, whose proto-max-bulk-len is 1 MiB: Poison makes a body
// over it, and Disconnect restarts the server (an outage; its AOF keeps the
// entries).
func TestConformancePrivate(t *testing.T) {
	publishertest.Run(t, harness(func(t *testing.T) (string, func(t *testing.T, cfg redisstream.Config)) {
		srv := startServer(t)
		return srv.addr, func(*testing.T, redisstream.Config) { srv.restart() }
	}, poison))
}

// harness builds instances on the server that server returns, with the
// disconnect it returns.
func harness(server func(t *testing.T) (string, func(*testing.T, redisstream.Config)), poison func(*outbox.Message)) publishertest.Harness {
	return publishertest.Harness{
		New: func(t *testing.T) publishertest.Instance {
			addr, disconnect := server(t)
			cfg := uniqueConfig(t, addr)
			p, err := redisstream.Connect(testCtx(t), cfg)
			if err != nil {
				t.Fatalf("Connect(%s): %v", addr, err)
			}
			return publishertest.Instance{
				Publisher: p,
				Poison:    poison,
				Consume: func(t *testing.T) <-chan publishertest.Received {
					return subscribeInto(t, cfg, broker.SubscribeOptions{FromStart: true}, func(d broker.Delivery) publishertest.Received {
						return publishertest.Received{Body: d.Body, MsgID: d.MsgID}
					})
				},
				Disconnect: func(t *testing.T) { disconnect(t, cfg) },
			}
		},
		Features: features,
	}
}
