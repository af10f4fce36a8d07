package pgstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifySQL is the wake-up a writing transaction sends with
// Config.NotifyInTx; it goes out when the transaction commits.
const notifySQL = `SELECT pg_notify($1, '')`

// notifyAsyncSQL is the notifier's own transaction. A NOTIFY gives its
// transaction an xid, so its commit waits for a WAL flush like a write's
// would; the wake-up is only a hint (a lost one costs a poll interval), so it
// commits without waiting and leaves the writers' flushes alone.
const notifyAsyncSQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')`

// Notify wakes the relays: those that listen through this Driver at once,
// in-process, and those of other processes through pg_notify, sent from a
// connection of its own. Call it after each commit that enqueued events
// (WithTx does it itself); a Notify that is missed costs latency only, as
// the relays poll. It never blocks: notifications requested
// while one is being sent are coalesced into one more, sent after it, so a
// burst of commits costs a few notifications rather than one each.
func (d *Driver) Notify() {
	d.wakeLocal()
	if d.cfg.DisableNotify {
		return
	}
	d.notifyMu.Lock()
	defer d.notifyMu.Unlock()
	if d.notifying {
		d.notifyPending = true
		return
	}
	d.notifying = true
	go d.sendNotifications()
}

func (d *Driver) sendNotifications() {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := d.pool.Exec(ctx, notifyAsyncSQL, d.names.Channel)
		cancel()
		d.notifyMu.Lock()
		// A failed notification is not retried: the relays' poll finds the
		// events, and a pool that is closing must not keep this running.
		if err != nil || !d.notifyPending {
			d.notifying, d.notifyPending = false, false
			d.notifyMu.Unlock()
			return
		}
		d.notifyPending = false
		d.notifyMu.Unlock()
		// Each notification is a transaction that takes PostgreSQL's notify
		// lock at its commit; under a stream of commits one per interval
		// keeps the relays awake.
		time.Sleep(d.notifyPause())
	}
}

// The least time between two notifications of a Driver under a stream of
// commits, which bounds the wake-up delay coalescing adds. When a relay of
// this process listens, Notify has woken it already; the other processes'
// relays only share the load, and a longer pause spares PostgreSQL most of
// the notifications.
const (
	notifyInterval       = time.Millisecond
	notifyIntervalShared = 25 * time.Millisecond
)

func (d *Driver) notifyPause() time.Duration {
	if l := d.local.Load(); l != nil && len(*l) > 0 {
		return notifyIntervalShared
	}
	return notifyInterval
}

// wakeLocal calls the wake function of every Listen call of this Driver.
// It holds no lock while it does: a wake function may take its own.
func (d *Driver) wakeLocal() {
	if l := d.local.Load(); l != nil {
		for _, wake := range *l {
			(*wake)()
		}
	}
}

// addLocal registers a Listen call's wake function until the returned
// function is called.
func (d *Driver) addLocal(wake func()) (remove func()) {
	key := &wake
	d.changeLocal(func(l []*func()) []*func() { return append(l, key) })
	return func() {
		d.changeLocal(func(l []*func()) []*func() {
			return slices.DeleteFunc(l, func(w *func()) bool { return w == key })
		})
	}
}

// changeLocal replaces the list of wake functions with change's result on a
// copy, so that wakeLocal can read it without a lock.
func (d *Driver) changeLocal(change func([]*func()) []*func()) {
	d.localMu.Lock()
	defer d.localMu.Unlock()
	var l []*func()
	if old := d.local.Load(); old != nil {
		l = slices.Clone(*old)
	}
	l = change(l)
	d.local.Store(&l)
}

// Listen holds a connection of its own LISTENing on the outbox's channel
// (Names().Channel: outboxes of other names do not wake it) and calls
// wake for every notification, and once as soon as it listens (events may
// have been committed while nobody listened). Until it returns, Notify calls
// wake too, in-process; wake must not block. It returns nil when ctx ends
// and an error when the connection fails.
func (d *Driver) Listen(ctx context.Context, wake func()) error {
	defer d.addLocal(wake)()
	if d.cfg.DisableNotify {
		<-ctx.Done()
		return nil
	}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pgstore: listen: acquire: %w", err)
	}
	defer func() {
		// Leave no LISTEN behind on a pooled connection: UNLISTEN, or drop
		// the connection when that is not possible.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if conn.Conn().IsClosed() {
			conn.Release()
			return
		}
		if _, err := conn.Exec(cctx, "UNLISTEN *"); err != nil {
			_ = conn.Hijack().Close(cctx)
			return
		}
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, d.sql.listen); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("pgstore: listen: %w", err)
	}
	wake()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pgstore: listen: %w", err)
		}
		wake()
	}
}

// notifyTx sends the wake-up inside tx, to go out when tx commits, with
// Config.NotifyInTx only: otherwise WithTx calls Notify after the commit.
func (d *Driver) notifyTx(ctx context.Context, tx pgx.Tx) error {
	if !d.cfg.NotifyInTx || d.cfg.DisableNotify {
		return nil
	}
	_, err := tx.Exec(ctx, notifySQL, d.names.Channel)
	return err
}
