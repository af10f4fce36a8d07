// Command quickstart is a small service on Herald's outbox engine, in a
// module of its own: it writes an account and the account's events in one
// SQLite transaction, and a relay publishes them to a NATS JetStream server
// embedded in the process, which the program then reads back.
//
//	go run .
package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	dir, err := os.MkdirTemp("", "quickstart")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	// The outbox lives in the application's own database, beside its tables.
	driver, err := sqlitestore.Open(filepath.Join(dir, "app.db"), sqlitestore.Config{Name: "accounts_outbox"})
	if err != nil {
		return err
	}
	defer func() { _ = driver.Close() }()
	if err := driver.Migrate(ctx); err != nil {
		return err
	}
	if _, err := driver.DB().ExecContext(ctx,
		`CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL, version INTEGER NOT NULL)`); err != nil {
		return err
	}
	client := outbox.NewClient(driver)

	// Each change writes the account row and its event in one transaction.
	// The row's version numbers the account's events.
	open := func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO account VALUES ('acc-1', 0, 1)`); err != nil {
			return err
		}
		_, err := client.EnqueueTx(ctx, tx, outbox.Event{AggregateType: "account", AggregateID: "acc-1",
			Type: "account.opened", Payload: []byte(`{"balance": 0}`), Sequence: 1})
		return err
	}
	credit := func(amount int) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			var balance, version int64
			err := tx.QueryRowContext(ctx, `UPDATE account SET balance = balance + ?, version = version + 1
				WHERE id = 'acc-1' RETURNING balance, version`, amount).Scan(&balance, &version)
			if err != nil {
				return err
			}
			_, err = client.EnqueueTx(ctx, tx, outbox.Event{AggregateType: "account", AggregateID: "acc-1",
				Type: "account.credited", Payload: fmt.Appendf(nil, `{"amount": %d, "balance": %d}`, amount, balance),
				Sequence: version})
			return err
		}
	}
	for _, change := range []func(*sql.Tx) error{open, credit(500), credit(250)} {
		if err := client.WithTx(ctx, change); err != nil {
			return err
		}
	}

	// A broker: NATS JetStream, embedded, on a free port.
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	streamCfg := natsjs.Config{Stream: "ACCOUNTS", SubjectPrefix: "accounts."}
	pub, err := natsjs.Connect(ctx, srv.ClientURL(), streamCfg)
	if err != nil {
		return err
	}
	defer func() { _ = pub.Close() }()

	// The relay publishes the committed events until it is stopped.
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relay := outbox.NewRelay(driver, pub, outbox.RelayConfig{Source: "/quickstart/accounts"})
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()

	// A consumer reads the stream back.
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	received := make(chan outbox.CloudEvent, 10)
	stop, err := natsjs.Subscribe(ctx, nc, streamCfg, natsjs.SubscribeOptions{}, func(d natsjs.Delivery) {
		if d.Err == nil {
			received <- d.Event
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	for range 3 {
		select {
		case e := <-received:
			fmt.Fprintf(out, "%s %s #%d %s\n", e.Type, e.Subject, e.Sequence, e.Data)
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no event within 30s")
		}
	}
	stopRelay()
	if err := <-relayDone; err != nil {
		return err
	}
	st, err := driver.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "pending %d, dead letters %d\n", st.Pending, st.DeadLetters)
	return nil
}
