package rabbitmq

import (
	"context"
	"sync/atomic"
	"time"
)

// stuckGrace is how long a socket write may outlive its batch's context
// before the connection is broken off.
const stuckGrace = 2 * time.Second

// writeGuard watches the writes of one batch. The AMQP client's writes take
// no context: a broker that stops reading the socket (it blocks publishers
// during a resource alarm that began mid-batch) would hold Publish, and
// Close behind it, for as long as the alarm lasts. Once the batch's context
// has ended, a write that makes no progress for stuckGrace gets the
// connection closed under it; the publisher then reconnects as after any
// other loss.
type writeGuard struct {
	seq    atomic.Uint64 // odd while a write is in progress
	fired  atomic.Bool   // abort was called
	done   chan struct{}
	exited chan struct{}
}

// guardWrites starts watching; abort breaks the connection. The returned
// stop must be called when the batch's writes are over; it returns once the
// watcher has.
func guardWrites(ctx context.Context, abort func()) (*writeGuard, func()) {
	g := &writeGuard{done: make(chan struct{}), exited: make(chan struct{})}
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(g.exited)
		t := time.NewTicker(stuckGrace)
		defer t.Stop()
		last := g.seq.Load()
		for {
			select {
			case <-g.done:
				return
			case <-t.C:
			}
			now := g.seq.Load()
			if now == last && now%2 == 1 {
				g.fired.Store(true)
				abort()
				return
			}
			last = now
		}
	})
	return g, func() {
		close(g.done)
		if !stopAfter() {
			<-g.exited
		}
	}
}

func (g *writeGuard) begin() { g.seq.Add(1) }
func (g *writeGuard) end()   { g.seq.Add(1) }
