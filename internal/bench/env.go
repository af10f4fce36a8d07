package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/broker/embeddednats"
	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/internal/ordersvc"
	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
	"github.com/heraldhq/herald/outbox/sqlitestore"
)

// relayConfig fills the zero fields of r with Herald's defaults.
func relayConfig(r outbox.RelayConfig) outbox.RelayConfig { return app.RelayDefaults(r) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cleanups runs functions in reverse order of registration.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// cleanupCtx is the context of the cleanups: they run after the run's
// context may have ended (Ctrl-C) and must still drop what the run made.
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// database is an outbox database of the bench's own: a fresh PostgreSQL
// schema or a fresh SQLite file.
type database struct {
	kind   app.DatabaseKind
	url    string // PostgreSQL: the URL with the schema as search_path
	schema string // PostgreSQL: the fresh schema, "" when none
	path   string // SQLite file
	pool   *pgxpool.Pool
	pg     *pgstore.Driver
	sq     *sqlitestore.Driver
	store  outbox.Store
	close  cleanups
}

func (d *database) Close() { d.close.run() }

// freshSchema creates a schema on PostgreSQL at rawURL and returns a URL
// whose connections use it (search_path) and a function that drops it.
func freshSchema(ctx context.Context, rawURL string) (string, string, func(), error) {
	schema := "herald_bench_" + randomHex(6)
	withSchema, err := withSearchPath(rawURL, schema)
	if err != nil {
		return "", "", nil, err
	}
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		return "", "", nil, app.RedactError(fmt.Errorf("bench: connect to PostgreSQL %s: %w", app.RedactURL(rawURL), err), rawURL)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", "", nil, fmt.Errorf("bench: create schema %s: %w", schema, err)
	}
	drop := func() {
		ctx, cancel := cleanupCtx()
		defer cancel()
		conn, err := pgx.Connect(ctx, rawURL)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop schema %s: %v\n", schema, app.RedactError(err, rawURL))
			return
		}
		defer func() { _ = conn.Close(ctx) }()
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop schema %s: %v\n", schema, err)
		}
	}
	return withSchema, schema, drop, nil
}

// withSearchPath returns the PostgreSQL connection string raw, a URL or a
// key=value string, with search_path set to schema.
func withSearchPath(raw, schema string) (string, error) {
	if !strings.Contains(raw, "://") {
		return raw + " search_path=" + schema, nil // the last setting of a key wins
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The error repeats the URL: name it redacted instead.
		return "", &app.UsageError{Err: fmt.Errorf("bench: --db %s does not parse as a URL", app.RedactURL(raw))}
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// openDatabase opens the outbox database of cfg for an engine mode (not
// full): a fresh schema (cfg.FreshSchema) or the URL's own on PostgreSQL,
// a new file in a temporary directory on SQLite unless --db names a file
// that does not exist yet. The outbox schema is migrated. conns is the
// PostgreSQL pool size.
func openDatabase(ctx context.Context, cfg Config, conns int) (_ *database, err error) {
	spec, err := app.ParseDatabaseURL(cfg.App.DatabaseURL, "")
	if err != nil {
		return nil, err
	}
	d := &database{kind: spec.Kind}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if cfg.App.DatabaseURL == "" || spec.Kind == app.SQLite {
		return d, d.openSQLite(ctx, cfg.App.DatabaseURL, spec.Path)
	}
	d.url = spec.URL
	if cfg.FreshSchema {
		u, schema, drop, err := freshSchema(ctx, spec.URL)
		if err != nil {
			return nil, err
		}
		d.close.add(drop)
		d.url, d.schema = u, schema
	}
	pcfg, err := pgxpool.ParseConfig(d.url)
	if err != nil {
		return nil, &app.UsageError{Err: app.RedactError(fmt.Errorf("--db: %w", err), d.url)}
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "herald-bench"
	if !strings.Contains(d.url, "pool_max_conns") {
		pcfg.MaxConns = int32(max(conns, 4)) //nolint:gosec // small
	}
	d.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("bench: open PostgreSQL: %w", err)
	}
	d.close.add(d.pool.Close)
	d.pg, err = pgstore.New(d.pool, pgstore.Config{Name: ordersvc.OutboxName}) // as herald serve runs it
	if err != nil {
		return nil, err
	}
	d.store = d.pg
	if err := d.pg.Migrate(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *database) openSQLite(ctx context.Context, raw, path string) error {
	if raw == "" {
		dir, err := os.MkdirTemp("", "herald-bench-")
		if err != nil {
			return err
		}
		d.close.add(func() { _ = os.RemoveAll(dir) })
		path = filepath.Join(dir, "herald.db")
	} else if _, err := os.Stat(path); err == nil {
		return &app.UsageError{Err: fmt.Errorf("--db %s exists: the bench needs a fresh SQLite file (or no --db for a temporary one)", raw)}
	}
	d.path = path
	sq, err := sqlitestore.Open(path, sqlitestore.Config{Name: ordersvc.OutboxName})
	if err != nil {
		return err
	}
	d.close.add(func() { _ = sq.Close() })
	d.sq, d.store = sq, sq
	return sq.Migrate(ctx)
}

// broker is the broker of a run: the embedded NATS server, started by the
// bench in a temporary directory, or the broker of --broker's URL.
type broker struct {
	kind     app.BrokerKind
	url      string
	embedded bool
	close    cleanups
}

func (b *broker) Close() { b.close.run() }

// openBroker starts an embedded NATS server on a free port for
// BrokerEmbedded, or returns the URL of the broker of cfg.
func openBroker(cfg Config) (*broker, error) {
	spec, err := app.ParseBrokerURL(cfg.App.BrokerURL)
	if err != nil {
		return nil, err
	}
	b := &broker{kind: spec.Kind}
	switch spec.Kind {
	case app.BrokerNATS, app.BrokerKafka, app.BrokerRabbitMQ, app.BrokerRedis, app.BrokerWebhook:
		b.url = spec.URL
		return b, nil
	case app.BrokerEmbedded:
	default:
		return nil, &app.UsageError{Err: errors.New("--broker: the bench needs embedded, nats://, kafka://, amqp://, redis:// or http(s)://")}
	}
	dir, err := os.MkdirTemp("", "herald-bench-nats-")
	if err != nil {
		return nil, err
	}
	b.close.add(func() { _ = os.RemoveAll(dir) })
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: dir})
	if err != nil {
		b.Close()
		return nil, err
	}
	b.close.add(srv.Shutdown)
	b.url, b.embedded = srv.ClientURL(), true
	return b, nil
}

// uniqueStream names a stream and subject prefix that nothing else uses.
func uniqueStream() natsjs.Config {
	id := randomHex(5)
	return natsjs.Config{
		Stream:        "HERALD_BENCH_" + strings.ToUpper(id),
		SubjectPrefix: "heraldbench." + id + ".",
	}
}

// deleteStream removes the stream of cfg from the server at url.
func deleteStream(natsURL string, cfg natsjs.Config) error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := cleanupCtx()
	defer cancel()
	if err := js.DeleteStream(ctx, cfg.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bench: delete stream %s: %w", cfg.Stream, err)
	}
	return nil
}
