// Package embeddednats runs a NATS server with JetStream inside the
// process: Herald's default broker (--broker embedded). It listens on
// 127.0.0.1:4223, never on NATS's standard port 4222, so it does not collide
// with a NATS server already running on the machine, and keeps its JetStream
// data under Herald's data directory.
//
//	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: filepath.Join(dataDir, "nats")})
//	if err != nil { ... }
//	defer srv.Shutdown()
//	pub, err := natsjs.Connect(ctx, srv.ClientURL(), natsjs.Config{})
package embeddednats

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults of Config.
const (
	DefaultHost         = "127.0.0.1"
	DefaultPort         = 4223
	DefaultReadyTimeout = 10 * time.Second
)

// RandomPort, as Config.Port, lets the operating system pick a free port
// (for tests); ClientURL and Port report the one it picked.
const RandomPort = server.RANDOM_PORT

// Config configures the embedded server. The zero value is not usable:
// StoreDir is required.
type Config struct {
	Host string // listen address; default DefaultHost
	// Port is the client port; 0 means DefaultPort (4223), RandomPort (-1)
	// a free port chosen by the system.
	Port int
	// StoreDir is where JetStream keeps its data, normally a directory
	// under Herald's data directory. Required: restarting with the same
	// StoreDir keeps the stream and its messages.
	StoreDir string
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections; default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Logger receives the server's log. Nil discards it (startup failures
	// are still reported in Start's error).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server is a running embedded NATS server.
type Server struct {
	ns       *server.Server
	shutdown sync.Once
}

// Start starts a server and waits until it accepts connections with
// JetStream enabled. It fails with a descriptive error when the port is in
// use, the store directory is unusable, or the server is not ready within
// cfg.ReadyTimeout; nothing keeps running after a failed Start.
func Start(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.StoreDir == "" {
		return nil, errors.New("embeddednats: StoreDir is required")
	}
	opts := &server.Options{
		ServerName: "herald-embedded",
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true, // the process's signals belong to Herald
		NoLog:      true, // logging goes through our logger below
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embeddednats: %w", err)
	}
	log := &logger{log: cfg.Logger}
	ns.SetLoggerV2(log, false, false, false)
	ns.Start()

	addr := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	fail := func(reason string) (*Server, error) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if fatal := log.fatal(); fatal != "" {
			reason = fatal
		}
		return nil, fmt.Errorf("embeddednats: start on %s (store %s): %s", addr, cfg.StoreDir, reason)
	}
	// Poll in short steps so a fatal startup error (port in use, JetStream
	// refused) is reported at once instead of after the whole timeout.
	deadline := time.Now().Add(cfg.ReadyTimeout)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if log.fatal() != "" {
			return fail("")
		}
		if time.Now().After(deadline) {
			return fail(fmt.Sprintf("not ready for connections after %s", cfg.ReadyTimeout))
		}
	}
	if !ns.JetStreamEnabled() {
		return fail("JetStream is not enabled")
	}
	return &Server{ns: ns}, nil
}

// ClientURL is the URL clients connect to, e.g. nats://127.0.0.1:4223.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Port is the port the server listens on (the chosen one with RandomPort).
func (s *Server) Port() int {
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Shutdown stops the server and waits until it has stopped. Clients are
// disconnected; JetStream data stays in StoreDir. Calling it again does
// nothing.
func (s *Server) Shutdown() {
	s.shutdown.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}

// logger adapts the server's logging to slog and remembers the first fatal
// error, which the server reports through its logger instead of returning.
type logger struct {
	log *slog.Logger

	mu        sync.Mutex
	fatalText string
}

func (l *logger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalText
}

func (l *logger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *logger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *logger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *logger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

// Fatalf records the error; unlike the server's own loggers it does not
// exit the process.
func (l *logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatalText == "" {
		l.fatalText = msg
	}
}
