package embeddednats_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/heraldhq/herald/broker/embeddednats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg embeddednats.Config) *embeddednats.Server {
	t.Helper()
	srv, err := embeddednats.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func TestStartServesJetStream(t *testing.T) {
	t.Parallel()
	srv := start(t, embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: t.TempDir()})

	if srv.Port() <= 0 || srv.Port() == 4222 || srv.Port() == embeddednats.DefaultPort {
		t.Fatalf("Port() = %d, want a random free port", srv.Port())
	}
	if want := "nats://127.0.0.1:" + strconv.Itoa(srv.Port()); srv.ClientURL() != want {
		t.Fatalf("ClientURL() = %q, want %q", srv.ClientURL(), want)
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream account info: %v", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create file stream: %v", err)
	}
	if ack, err := js.Publish(ctx, "s.x", []byte("1")); err != nil || ack.Sequence != 1 {
		t.Fatalf("publish: ack %+v, err %v", ack, err)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	if embeddednats.DefaultPort == 4222 || embeddednats.DefaultPort != 4223 {
		t.Fatalf("DefaultPort = %d, want 4223 (never NATS's standard port)", embeddednats.DefaultPort)
	}
	if embeddednats.DefaultHost != "127.0.0.1" {
		t.Fatalf("DefaultHost = %q", embeddednats.DefaultHost)
	}
}

func TestStartRequiresStoreDir(t *testing.T) {
	t.Parallel()
	srv, err := embeddednats.Start(embeddednats.Config{Port: embeddednats.RandomPort})
	if err == nil {
		srv.Shutdown()
		t.Fatal("Start without StoreDir succeeded")
	}
	if !strings.Contains(err.Error(), "StoreDir") {
		t.Fatalf("error %q does not name StoreDir", err)
	}
}

func TestStartPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	port := l.Addr().(*net.TCPAddr).Port

	begin := time.Now()
	srv, err := embeddednats.Start(embeddednats.Config{Port: port, StoreDir: t.TempDir(), ReadyTimeout: 20 * time.Second})
	if err == nil {
		srv.Shutdown()
		t.Fatal("Start on a port in use succeeded")
	}
	if elapsed := time.Since(begin); elapsed > 10*time.Second {
		t.Errorf("Start took %s to report a port in use; want it at once", elapsed)
	}
	msg := err.Error()
	if !strings.Contains(msg, strconv.Itoa(port)) || !strings.Contains(msg, "address already in use") {
		t.Fatalf("error %q should name the port and say it is in use", msg)
	}
}

func TestShutdownTwiceAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := start(t, embeddednats.Config{Port: embeddednats.RandomPort, StoreDir: dir})
	port := srv.Port()
	srv.Shutdown()
	srv.Shutdown() // idempotent

	if _, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err == nil {
		t.Fatal("connected to a server that was shut down")
	}
	again := start(t, embeddednats.Config{Port: port, StoreDir: dir})
	if again.Port() != port {
		t.Fatalf("restart port = %d, want %d", again.Port(), port)
	}
}
