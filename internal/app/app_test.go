package app_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/app"
	"github.com/heraldhq/herald/order"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseDatabaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, dataDir string
		want         app.DatabaseSpec
		err          string
	}{
		{"", "./herald-data", app.DatabaseSpec{Kind: app.SQLite, Path: "herald-data/herald.db"}, ""},
		{"", "/var/lib/herald", app.DatabaseSpec{Kind: app.SQLite, Path: "/var/lib/herald/herald.db"}, ""},
		{"sqlite:///abs/h.db", "", app.DatabaseSpec{Kind: app.SQLite, Path: "/abs/h.db"}, ""},
		{"sqlite://rel/h.db", "", app.DatabaseSpec{Kind: app.SQLite, Path: "rel/h.db"}, ""},
		{"sqlite:h.db", "", app.DatabaseSpec{Kind: app.SQLite, Path: "h.db"}, ""},
		{"postgres://u@localhost:5432/db?sslmode=disable", "", app.DatabaseSpec{Kind: app.Postgres, URL: "postgres://u@localhost:5432/db?sslmode=disable"}, ""},
		{"postgresql://u@localhost/db", "", app.DatabaseSpec{Kind: app.Postgres, URL: "postgresql://u@localhost/db"}, ""},
		{"sqlite://", "", app.DatabaseSpec{}, "no database file"},
		{"sqlite://:memory:", "", app.DatabaseSpec{}, "in-memory"},
		{"sqlite://file::memory:?cache=shared", "", app.DatabaseSpec{}, "in-memory"},
		{"mysql://u:pw@h/db", "", app.DatabaseSpec{}, "unsupported database URL"},
		{"herald.db", "", app.DatabaseSpec{}, "unsupported database URL"},
		{"postgres://u:pw@h:port/db", "", app.DatabaseSpec{}, "invalid PostgreSQL URL"},
	}
	for _, tt := range tests {
		got, err := app.ParseDatabaseURL(tt.raw, tt.dataDir)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !app.IsUsageError(err) {
				t.Errorf("ParseDatabaseURL(%q) error %v, want a usage error with %q", tt.raw, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), ":pw@") {
				t.Errorf("ParseDatabaseURL(%q) shows the password: %v", tt.raw, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDatabaseURL(%q, %q) = %+v, %v; want %+v", tt.raw, tt.dataDir, got, err, tt.want)
		}
	}
}

func TestParseBrokerURL(t *testing.T) {
	t.Parallel()
	ok := map[string]app.BrokerSpec{
		"":                                 {Kind: app.BrokerEmbedded},
		"embedded":                         {Kind: app.BrokerEmbedded},
		"EMBEDDED":                         {Kind: app.BrokerEmbedded},
		"log":                              {Kind: app.BrokerLog},
		"nats://h:4222":                    {Kind: app.BrokerNATS, URL: "nats://h:4222"},
		"nats://a:1,nats://b":              {Kind: app.BrokerNATS, URL: "nats://a:1,nats://b"},
		"tls://h:4222":                     {Kind: app.BrokerNATS, URL: "tls://h:4222"},
		"https://example.com/hook?token=x": {Kind: app.BrokerWebhook, URL: "https://example.com/hook?token=x"},
		"http://127.0.0.1:8081/hook":       {Kind: app.BrokerWebhook, URL: "http://127.0.0.1:8081/hook"},
		"redis://h:6379/0":                 {Kind: app.BrokerRedis, URL: "redis://h:6379/0"},
		"kafka://h:9092,h2:9092":           {Kind: app.BrokerKafka, URL: "kafka://h:9092,h2:9092"},
		"amqp://u:secret@h:5672/vhost":     {Kind: app.BrokerRabbitMQ, URL: "amqp://u:secret@h:5672/vhost"},
	}
	for raw, want := range ok {
		if got, err := app.ParseBrokerURL(raw); err != nil || got != want {
			t.Errorf("ParseBrokerURL(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	bad := map[string]string{
		"amqp://u:secret@h:5672/vhost?x=1":   "x",
		"redis://h:6379/0?pool_size=3":       "pool_size",
		"kafka://h:9092?acks=1":              "acks",
		"https://u:hunter2@example.com/hook": "password",
		"http://":                            "host",
		"nats://":                            "want nats://HOST:PORT",
		"nats://h:0":                         "port must be",
		"nats://h:4222,kafka://x":            "want nats://HOST:PORT",
		"sqs://queue":                        "unknown broker scheme",
		"stdout":                             "unknown broker",
	}
	for raw, want := range bad {
		_, err := app.ParseBrokerURL(raw)
		if err == nil || !strings.Contains(err.Error(), want) || !app.IsUsageError(err) {
			t.Errorf("ParseBrokerURL(%q) error %v, want a usage error with %q", raw, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), ":secret") || strings.Contains(err.Error(), "hunter2")) {
			t.Errorf("ParseBrokerURL(%q) shows the password: %v", raw, err)
		}
	}
}

// lockedBuffer collects the log broker's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testConfig(t *testing.T, events *lockedBuffer) app.Config {
	return app.Config{
		DataDir:   t.TempDir(),
		BrokerURL: "log",
		HTTPAddr:  "127.0.0.1:0",
		EventLog:  events,
	}
}

func TestStartServeShutdown(t *testing.T) {
	t.Parallel()
	events := &lockedBuffer{}
	var logs lockedBuffer
	cfg := testConfig(t, events)
	cfg.Logger = newLogger(&logs)
	ctx := context.Background()
	a, err := app.Start(ctx, cfg, app.Options{HTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", a.URL())
	}
	if !strings.Contains(logs.String(), "herald listening on "+a.URL()) || !strings.Contains(logs.String(), "loopback only") {
		t.Errorf("start-up log:\n%s", logs.String())
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+"/readyz", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz: %d", resp.StatusCode)
	}

	// An order's event reaches the broker through the relay.
	o, err := a.DB.Orders.CreateOrder(ctx, order.CreateOrder{CustomerID: "c", Currency: "EUR",
		LineItems: []order.CreateLineItem{{ProductID: "p", ProductType: order.ProductDigital, Quantity: 1, UnitPrice: 5}}},
		order.RequestOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(events.String(), o.ID.String()) {
		if time.Now().After(deadline) {
			t.Fatal("the order's event was not published")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if resp, err := client.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Error("the API still answers after Shutdown")
	}
	if !strings.Contains(logs.String(), "published=1") {
		t.Errorf("stop log:\n%s", logs.String())
	}
}

func TestRunStopsOnContext(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, &lockedBuffer{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(ctx, cfg, app.Options{}, func(a *app.App) {
			if a.URL() != "" {
				t.Errorf("a relay serves HTTP at %s", a.URL())
			}
			cancel()
		})
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestStartFailsCleanly(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() }) // after the parallel subtests
	startFails := func(t *testing.T, cfg app.Config, opts app.Options) error {
		t.Helper()
		a, err := app.Start(context.Background(), cfg, opts)
		if err == nil {
			_ = a.Shutdown(context.Background())
			t.Fatal("Start succeeded")
		}
		return err
	}

	t.Run("http port in use", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t, &lockedBuffer{})
		cfg.HTTPAddr = busy.Addr().String()
		err := startFails(t, cfg, app.Options{HTTP: true})
		if !strings.Contains(err.Error(), "--http-addr") {
			t.Fatalf("Start on a busy port: %v", err)
		}
	})
	t.Run("embedded nats port in use", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t, &lockedBuffer{})
		cfg.BrokerURL = "embedded"
		cfg.EmbeddedNATSAddr = busy.Addr().String()
		err := startFails(t, cfg, app.Options{})
		if !strings.Contains(err.Error(), "embedded NATS") || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("Start on a busy NATS port: %v", err)
		}
	})
	t.Run("no-migrate with pending migrations", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t, &lockedBuffer{})
		cfg.NoMigrate = true
		err := startFails(t, cfg, app.Options{})
		if !strings.Contains(err.Error(), "run herald migrate") {
			t.Fatalf("Start with --no-migrate on an empty database: %v", err)
		}
	})
	t.Run("public address without tokens", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t, &lockedBuffer{})
		cfg.HTTPAddr = "0.0.0.0:0"
		err := startFails(t, cfg, app.Options{HTTP: true})
		if !app.IsUsageError(err) {
			t.Fatalf("Start on 0.0.0.0 without tokens: %v", err)
		}
		cfg.APIToken = "t"
		cfg.HTTPAddr = "127.0.0.1:0"
		a, err := app.Start(context.Background(), cfg, app.Options{HTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMigrationStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := app.OpenDatabase(ctx, app.Config{DatabaseURL: "sqlite://" + filepath.Join(t.TempDir(), "x", "h.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	ms, err := db.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]int{}
	for _, m := range ms {
		sets[m.Set]++
		if m.Applied() || m.Version < 1 || m.Name == "" || strings.Contains(m.Name, "/") {
			t.Errorf("migration %+v", m)
		}
	}
	if sets["outbox"] == 0 || sets["orders"] == 0 {
		t.Errorf("migration sets %v", sets)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if ms, err = db.MigrationStatus(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if !m.Applied() {
			t.Errorf("not applied: %+v", m)
		}
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := (app.Config{}).Validate(); err != nil {
		t.Errorf("the zero Config: %v", err)
	}
	err := app.Config{DatabaseURL: "mysql://x", BrokerURL: "kafka://y?acks=1"}.Validate()
	if !app.IsUsageError(err) || !strings.Contains(err.Error(), "mysql") || !strings.Contains(err.Error(), "acks") {
		t.Errorf("Validate reports %v", err)
	}
	var u *app.UsageError
	if !errors.As(err, &u) {
		t.Errorf("%T is no *UsageError", err)
	}
}

// A data directory has one owner: a second process on it (herald relay in
// the directory of a running serve) is refused before it opens the
// embedded NATS store, and the directory is free again once the first
// stops.
func TestDataDirectoryHasOneOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cfg := app.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", EmbeddedNATSAddr: addr}
	first, err := app.OpenBroker(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.OpenBroker(ctx, cfg); err == nil || !strings.Contains(err.Error(), "is in use by another herald process (pid ") ||
		!strings.Contains(err.Error(), dir) {
		t.Fatalf("a second owner of %s: %v", dir, err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := app.OpenBroker(ctx, cfg)
	if err != nil {
		t.Fatalf("after the first owner closed: %v", err)
	}
	_ = again.Close()
}
