package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heraldhq/herald/outbox"
)

// IsConnectionError reports whether err means that PostgreSQL could not be
// reached or that the connection to it was lost, as opposed to an error the
// server reported about a statement. It asks pgx's own predicates, never the
// error's text: a failed connection attempt (*pgconn.ConnectError), an error
// pgx raised before sending anything (pgconn.SafeToRetry), a timeout
// (pgconn.Timeout), a network error, a connection closed mid-message, and the
// server's connection-class codes: class 08 (connection exception), 57P01
// admin_shutdown (pg_terminate_backend, a fast shutdown), 57P02
// crash_shutdown, 57P03 cannot_connect_now (starting up, in recovery) and
// 53300 too_many_connections. A cancelled context is not one: the caller
// went away.
func IsConnectionError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, outbox.ErrUnavailable) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300":
			return true
		}
		return len(pgErr.Code) == 5 && pgErr.Code[:2] == "08"
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, pgconn.ErrConnClosed)
}

// Unavailable marks err with outbox.ErrUnavailable when it is a connection
// error (IsConnectionError) that is not marked yet, and returns any other
// error unchanged. Use it on errors of statements outside a commit: a
// connection lost before COMMIT was sent leaves nothing written, as
// PostgreSQL rolls back the transaction of a session that ends.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, outbox.ErrUnavailable) || !IsConnectionError(err) {
		return err
	}
	return &unavailableError{err: err}
}

// unavailableError is an error marked with outbox.ErrUnavailable. Its
// message is the original one: the mark is for errors.Is.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{outbox.ErrUnavailable, e.err}
}

// commitError marks a failed COMMIT: a connection error before anything was
// sent is ErrUnavailable (nothing was written), any other connection error
// is ErrOutcomeUnknown (the commit may have happened). An error the server
// answered (a serialization failure, a deferred constraint) is a rollback
// and stays as it is.
func commitError(err error) error {
	switch {
	case pgconn.SafeToRetry(err) && !errors.Is(err, context.Canceled):
		return Unavailable(fmt.Errorf("pgstore: commit: %w", err))
	case IsConnectionError(err),
		// pgx reports a COMMIT cancelled in flight as the context's error:
		// it may have reached the server.
		errors.Is(err, context.Canceled) && !pgconn.SafeToRetry(err):
		return fmt.Errorf("pgstore: commit: %w (%w)", outbox.ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("pgstore: commit: %w", err)
}

// begin starts a transaction for WithTx. A BEGIN that fails on a lost
// connection is tried once more, on a connection that has just answered a
// ping: after PostgreSQL restarts or its sessions are terminated, the pool
// still holds connections to the processes that are gone, and each fails on
// its next use. Retrying is safe, as a failed BEGIN started nothing and fn
// has not run. release returns the retry's connection to the pool after the
// transaction ended (a transaction of pool.Begin releases its own).
func (d *Driver) begin(ctx context.Context) (tx pgx.Tx, release func(), err error) {
	tx, err = d.pool.Begin(ctx)
	if err == nil {
		return tx, func() {}, nil
	}
	if !IsConnectionError(err) || ctx.Err() != nil {
		return nil, nil, Unavailable(fmt.Errorf("pgstore: begin: %w", err))
	}
	conn, err := liveConn(ctx, d.pool)
	if err == nil {
		tx, err = conn.Begin(ctx)
		if err == nil {
			return tx, conn.Release, nil
		}
		conn.Release()
	}
	return nil, nil, Unavailable(fmt.Errorf("pgstore: begin: %w", err))
}

// liveConn acquires a connection of pool that answers a ping, passing over
// (and so closing) those whose server process is gone, at most as many as
// the pool holds.
func liveConn(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Conn, error) {
	var err error
	for range pool.Config().MaxConns + 1 {
		var conn *pgxpool.Conn
		conn, err = pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		if err = conn.Ping(ctx); err == nil {
			return conn, nil
		}
		conn.Release() // a closed connection leaves the pool
		if !IsConnectionError(err) || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, err
}
