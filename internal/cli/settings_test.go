package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// parse runs the command line with args and env but, instead of the
// command's work, returns the settings it would have run with.
func parse(t *testing.T, env []string, args ...string) (settings, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := newCLI(&stdout, &stderr, env)
	root := c.rootCommand()
	var got *settings
	cmd, _, err := root.Find(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd.RunE = func(*cobra.Command, []string) error {
		s := c.s
		got = &s
		return nil
	}
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := root.ExecuteContext(context.Background()); err != nil {
		return settings{}, err
	}
	if got == nil {
		t.Fatalf("herald %v did not run", args)
	}
	return *got, nil
}

func TestSettingPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flag, env          string
		def, byEnv, byFlag string
		get                func(s *settings) any
	}{
		{"db", "HERALD_DATABASE_URL", "", "sqlite://e.db", "postgres://u@h/db", func(s *settings) any { return s.db }},
		{"broker", "HERALD_BROKER_URL", "embedded", "log", "nats://127.0.0.1:4222", func(s *settings) any { return s.broker }},
		{"data-dir", "HERALD_DATA_DIR", "./herald-data", "/env", "/flag", func(s *settings) any { return s.dataDir }},
		{"http-addr", "HERALD_HTTP_ADDR", "127.0.0.1:8080", "127.0.0.1:1", "127.0.0.1:2", func(s *settings) any { return s.httpAddr }},
		{"embedded-nats-addr", "HERALD_EMBEDDED_NATS_ADDR", "127.0.0.1:4223", "127.0.0.1:3", "127.0.0.1:4", func(s *settings) any { return s.natsAddr }},
		{"api-token", "HERALD_API_TOKEN", "", "env-token", "flag-token", func(s *settings) any { return s.apiToken }},
		{"admin-token", "HERALD_ADMIN_TOKEN", "", "env-admin", "flag-admin", func(s *settings) any { return s.adminToken }},
		{"log-level", "HERALD_LOG_LEVEL", "info", "warn", "debug", func(s *settings) any { return s.logLevel }},
		{"log-format", "HERALD_LOG_FORMAT", "text", "json", "text", func(s *settings) any { return s.logFormat }},
		{"batch-size", "HERALD_BATCH_SIZE", "500", "20", "30", func(s *settings) any { return s.batchSize }},
		{"workers", "HERALD_WORKERS", "1", "2", "3", func(s *settings) any { return s.workers }},
		{"poll-interval", "HERALD_POLL_INTERVAL", "1s", "2s", "3s", func(s *settings) any { return s.pollInterval }},
		{"poll-only", "HERALD_POLL_ONLY", "false", "true", "false", func(s *settings) any { return s.pollOnly }},
		{"max-attempts", "HERALD_MAX_ATTEMPTS", "10", "4", "5", func(s *settings) any { return s.maxAttempts }},
		{"retry-base", "HERALD_RETRY_BASE", "1s", "2s", "3s", func(s *settings) any { return s.retryBase }},
		{"retry-cap", "HERALD_RETRY_CAP", "5m0s", "1m0s", "2m0s", func(s *settings) any { return s.retryCap }},
		{"move-on-past-dead-letters", "HERALD_MOVE_ON_PAST_DEAD_LETTERS", "false", "true", "false", func(s *settings) any { return s.moveOn }},
		{"source", "HERALD_SOURCE", "/herald/orders", "/env", "/flag", func(s *settings) any { return s.source }},
		{"no-migrate", "HERALD_NO_MIGRATE", "false", "true", "false", func(s *settings) any { return s.noMigrate }},
		{"shutdown-timeout", "HERALD_SHUTDOWN_TIMEOUT", "30s", "5s", "6s", func(s *settings) any { return s.shutdownTimeout }},
		{"metrics-addr", "HERALD_METRICS_ADDR", "", "127.0.0.1:5", "127.0.0.1:6", func(s *settings) any { return s.metricsAddr }},
		{"max-connections", "HERALD_MAX_CONNECTIONS", "1024", "20", "30", func(s *settings) any { return s.maxConnections }},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			t.Parallel()
			if got := EnvVar(tt.flag); got != tt.env {
				t.Fatalf("EnvVar(%q) = %s, want %s", tt.flag, got, tt.env)
			}
			check := func(name string, env []string, args []string, want string) {
				t.Helper()
				s, err := parse(t, env, append([]string{"serve"}, args...)...)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if got := fmt.Sprint(tt.get(&s)); got != want {
					t.Errorf("%s: --%s = %q, want %q", name, tt.flag, got, want)
				}
			}
			env := []string{tt.env + "=" + tt.byEnv}
			flag := []string{"--" + tt.flag + "=" + tt.byFlag}
			check("default", nil, nil, tt.def)
			check("environment", env, nil, tt.byEnv)
			check("flag over environment", env, flag, tt.byFlag)
			check("flag alone", nil, flag, tt.byFlag)
			check("empty variable", []string{tt.env + "="}, nil, tt.def)
		})
	}
}

// sampleValue returns a valid value for a flag of type typ.
func sampleValue(typ string) string {
	switch typ {
	case "bool":
		return "true"
	case "float64":
		return "0.25"
	case "int", "int64":
		return "7"
	case "duration":
		return "7s"
	case "stringSlice":
		return "a,b"
	}
	return "sample"
}

// TestEveryFlagReadsItsVariable checks, for every flag of every command,
// that its HERALD_* variable sets it.
func TestEveryFlagReadsItsVariable(t *testing.T) {
	t.Parallel()
	c := newCLI(nil, nil, nil)
	root := c.rootCommand()
	var walk func(cmd *cobra.Command)
	n := 0
	walk = func(cmd *cobra.Command) {
		cmd.InheritedFlags() // merges the persistent flags into cmd.Flags()
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" || EnvVar(f.Name) == "" {
				return
			}
			n++
			fs := pflag.NewFlagSet("copy", pflag.ContinueOnError)
			fs.AddFlag(&pflag.Flag{Name: f.Name, Value: newValueLike(t, f), Usage: f.Usage})
			v := sampleValue(f.Value.Type())
			if err := applyEnv(fs, map[string]string{EnvVar(f.Name): v}); err != nil {
				t.Errorf("%s --%s: %v", cmd.CommandPath(), f.Name, err)
				return
			}
			if got := fs.Lookup(f.Name).Value.String(); !strings.Contains(got, strings.Split(v, ",")[0]) {
				t.Errorf("%s --%s: %s=%s gave %q", cmd.CommandPath(), f.Name, EnvVar(f.Name), v, got)
			}
			if !strings.HasPrefix(EnvVar(f.Name), "HERALD_") {
				t.Errorf("--%s: variable %s", f.Name, EnvVar(f.Name))
			}
		})
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 30 {
		t.Fatalf("checked only %d flags", n)
	}
}

// newValueLike returns a fresh value of f's type, so the test does not
// change the command's own.
func newValueLike(t *testing.T, f *pflag.Flag) pflag.Value {
	fs := pflag.NewFlagSet("new", pflag.ContinueOnError)
	switch f.Value.Type() {
	case "bool":
		return boolValue(fs)
	case "int":
		fs.Int("x", 0, "")
	case "int64":
		fs.Int64("x", 0, "")
	case "float64":
		fs.Float64("x", 0, "")
	case "duration":
		fs.Duration("x", 0, "")
	case "stringSlice":
		fs.StringSlice("x", nil, "")
	case "string":
		fs.String("x", "", "")
	default:
		t.Fatalf("--%s: unexpected flag type %s", f.Name, f.Value.Type())
	}
	return fs.Lookup("x").Value
}

func boolValue(fs *pflag.FlagSet) pflag.Value {
	fs.Bool("x", false, "")
	return fs.Lookup("x").Value
}
