package cli_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/cli"
)

// TestBadInput checks that bad flags, variables, URLs and arguments exit
// with status 2 and a clear message, and start nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  []string
		args []string
		want string // in stderr
	}{
		{"unknown database", nil, []string{"serve", "--db", "mysql://u@h/db"}, "unsupported database URL"},
		{"sqlite without file", nil, []string{"serve", "--db", "sqlite://"}, "no database file"},
		{"sqlite in memory", nil, []string{"serve", "--db", "sqlite://:memory:"}, "in-memory"},
		{"bad postgres url", nil, []string{"serve", "--db", "postgres://u@h:notaport/db"}, "invalid PostgreSQL URL"},
		{"database from env", []string{"HERALD_DATABASE_URL=oracle://x"}, []string{"migrate"}, "unsupported database URL"},
		{"kafka unknown setting", nil, []string{"serve", "--broker", "kafka://127.0.0.1:9092?acks=1"}, "acks"},
		{"rabbitmq unknown setting", nil, []string{"relay", "--broker", "amqp://u:secret@127.0.0.1:5672/v?prefetch=9"}, "prefetch"},
		{"redis unknown setting", nil, []string{"serve", "--broker", "redis://127.0.0.1:6379/0?pool_size=3"}, "pool_size"},
		{"webhook with a password", nil, []string{"serve", "--broker", "https://u:hunter2@example.com/hook"}, "password"},
		{"webhook without a host", []string{"HERALD_BROKER_URL=http://"}, []string{"serve"}, "host"},
		{"unknown broker", nil, []string{"serve", "--broker", "pigeon"}, "unknown broker"},
		{"unknown broker scheme", nil, []string{"serve", "--broker", "mqtt://127.0.0.1:1883"}, `unknown broker scheme "mqtt"`},
		{"nats without host", nil, []string{"serve", "--broker", "nats://"}, "want nats://HOST:PORT"},
		{"nats bad port", nil, []string{"serve", "--broker", "nats://127.0.0.1:99999"}, "port must be"},
		{"http addr", nil, []string{"serve", "--http-addr", "localhost"}, "--http-addr \"localhost\" is not a host:port"},
		{"public without tokens", nil, []string{"serve", "--http-addr", "0.0.0.0:8080"}, "no token is set"},
		{"every interface without tokens", []string{"HERALD_HTTP_ADDR=:8080"}, []string{"serve"}, "no token is set"},
		{"embedded nats port", nil, []string{"serve", "--embedded-nats-addr", "127.0.0.1:0"}, "port must be a number between 1 and 65535"},
		{"embedded nats on a public address", nil, []string{"serve", "--embedded-nats-addr", "0.0.0.0:4223", "--api-token", "a", "--admin-token", "b"}, "embedded NATS server has no authentication"},
		{"batch size", nil, []string{"serve", "--batch-size", "0"}, "--batch-size must be between 1 and"},
		{"batch size too big", nil, []string{"relay", "--batch-size", "1000000"}, "--batch-size must be between 1 and"},
		{"workers", nil, []string{"relay", "--workers", "-1"}, "--workers must be between 1 and"},
		{"poll interval", nil, []string{"serve", "--poll-interval", "0s"}, "--poll-interval must be positive"},
		{"max attempts", nil, []string{"serve", "--max-attempts", "0"}, "--max-attempts must be at least 1"},
		{"retry base", nil, []string{"serve", "--retry-base", "-1s"}, "--retry-base must be positive"},
		{"retry cap below base", nil, []string{"serve", "--retry-base", "2m", "--retry-cap", "1m"}, "--retry-cap (1m0s) must not be below --retry-base (2m0s)"},
		{"source", nil, []string{"serve", "--source", "has space"}, "--source"},
		{"empty source", nil, []string{"serve", "--source="}, "--source must not be empty"},
		{"shutdown timeout", nil, []string{"serve", "--shutdown-timeout", "0s"}, "--shutdown-timeout must be positive"},
		{"max connections", nil, []string{"serve", "--max-connections", "0"}, "--max-connections must be at least 1, got 0"},
		{"negative max connections", []string{"HERALD_MAX_CONNECTIONS=-5"}, []string{"serve"}, "--max-connections must be at least 1, got -5"},
		{"metrics addr", nil, []string{"serve", "--metrics-addr", "9090"}, `--metrics-addr "9090" is not a host:port`},
		{"metrics addr of the api", []string{"HERALD_METRICS_ADDR=127.0.0.1:8080"}, []string{"serve", "--http-addr", "127.0.0.1:8080"}, "is also --http-addr"},
		{"bad int variable", []string{"HERALD_BATCH_SIZE=abc"}, []string{"relay"}, `invalid value "abc" for HERALD_BATCH_SIZE (--batch-size)`},
		{"bad bool variable", []string{"HERALD_POLL_ONLY=perhaps"}, []string{"relay"}, "HERALD_POLL_ONLY (--poll-only)"},
		{"bad duration variable", []string{"HERALD_POLL_INTERVAL=soon"}, []string{"serve"}, "HERALD_POLL_INTERVAL"},
		{"bad int flag", nil, []string{"serve", "--workers", "many"}, "--workers"},
		{"log level", nil, []string{"stats", "--log-level", "loud"}, "--log-level \"loud\""},
		{"log format", []string{"HERALD_LOG_FORMAT=xml"}, []string{"stats"}, "--log-format \"xml\""},
		{"unknown flag", nil, []string{"serve", "--nope"}, "unknown flag: --nope"},
		{"unknown command", nil, []string{"serf"}, `unknown command "serf"`},
		{"unknown dlq command", nil, []string{"dlq", "purge"}, `unknown command "purge" for "herald dlq"`},
		{"serve argument", nil, []string{"serve", "now"}, "takes no arguments"},
		{"dlq show without id", nil, []string{"dlq", "show"}, "takes one dead-letter id"},
		{"dlq show bad id", nil, []string{"dlq", "show", "abc"}, `"abc" is not a dead-letter id`},
		{"dlq replay nothing", nil, []string{"dlq", "replay"}, "give a dead-letter id, or --all"},
		{"dlq replay both", nil, []string{"dlq", "replay", "3", "--all"}, "not both"},
		{"dlq replay filter without all", nil, []string{"dlq", "replay", "3", "--event-type", "order.created"}, "go with --all"},
		{"dlq discard without reason", nil, []string{"dlq", "discard", "3"}, "--reason is required"},
		{"HERALD_ALL does not replay everything", []string{"HERALD_ALL=true"}, []string{"dlq", "replay"}, "give a dead-letter id, or --all"},
		{"HERALD_REASON is no reason", []string{"HERALD_REASON=left over"}, []string{"dlq", "discard", "3"}, "--reason is required"},
		{"dlq list state", nil, []string{"dlq", "list", "--state", "lost"}, `--state "lost"`},
		{"dlq list limit", nil, []string{"dlq", "list", "--limit", "0"}, "--limit must be between 1 and 500"},
		// Filters are checked by the rules of the drivers and the API
		// (outbox.DeadLetterFilter.Validate) before anything is opened.
		{"dlq list state in upper case", nil, []string{"dlq", "list", "--state", "ALL"}, `--state "ALL": must be one of open, replayed, discarded or all`},
		{"dlq list NUL", nil, []string{"dlq", "list", "--aggregate-id", "a\x00b"}, `--aggregate-id "a\x00b": must not contain control characters`},
		{"dlq list not UTF-8", nil, []string{"dlq", "list", "--aggregate-type", "\xff"}, `--aggregate-type "\xff": must be valid UTF-8`},
		{"dlq list escape", nil, []string{"dlq", "list", "--event-type", "\x1b[2J"}, `--event-type "\x1b[2J": must not contain control characters`},
		{"dlq list long", nil, []string{"dlq", "list", "--aggregate-id", strings.Repeat("é", 128)}, "--aggregate-id \"ééé"},
		{"dlq list long says bytes", nil, []string{"dlq", "list", "--aggregate-id", strings.Repeat("é", 128)}, "…: must be at most 255 bytes"},
		{"dlq list negative cursor", nil, []string{"dlq", "list", "--after", "-1"}, "--after -1: must not be negative"},
		{"dlq list smallest cursor", nil, []string{"dlq", "list", "--after", "-9223372036854775808"}, "--after -9223372036854775808: must not be negative"},
		{"dlq list every field", nil, []string{"dlq", "list", "--state", "x", "--aggregate-id", "\x00", "--after", "-2"},
			`--state "x": must be one of open, replayed, discarded or all; --aggregate-id "\x00": must not contain control characters; --after -2: must not be negative`},
		{"dlq replay NUL", nil, []string{"dlq", "replay", "--all", "--aggregate-id", "a\x00b"}, `--aggregate-id "a\x00b": must not contain control characters`},
		{"dlq replay NUL in type", nil, []string{"dlq", "replay", "--all", "--aggregate-type", "order\x00"}, `--aggregate-type "order\x00": must not contain control characters`},
		{"dlq replay NUL on postgres", []string{"HERALD_DATABASE_URL=postgres://nobody@127.0.0.1:1/none"},
			[]string{"dlq", "replay", "--all", "--event-type", "\x00"}, `--event-type "\x00": must not contain control characters`},
		{"stats timeout", nil, []string{"stats", "--timeout", "0s"}, "--timeout must be positive"},
		{"tail log broker", nil, []string{"tail", "--broker", "log"}, "herald tail reads the broker"},
		{"tail event type", nil, []string{"tail", "--event-type", "orders.*"}, "--event-type \"orders.*\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(t.TempDir(), "data")
			env := append([]string{"HERALD_DATA_DIR=" + dataDir}, tt.env...)
			r := run(t, env, tt.args...)
			if r.code != cli.ExitUsage {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, cli.ExitUsage, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, r.stderr)
			}
			if !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("stderr does not point to --help:\n%s", r.stderr)
			}
			if strings.Contains(r.stderr, "secret") && !strings.Contains(r.stderr, "signing secret") || strings.Contains(r.stderr, "hunter2") {
				t.Errorf("stderr shows a password:\n%s", r.stderr)
			}
			if strings.Contains(r.stderr, "panic") {
				t.Errorf("stderr shows a panic:\n%s", r.stderr)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("the data directory was created (%v): something started", err)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out := mustRun(t, nil, "version")
	for _, want := range []string{"herald ", "commit ", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	// Bad settings of other commands do not stop version.
	out = mustRun(t, []string{"HERALD_LOG_LEVEL=loud", "HERALD_BROKER_URL=kafka://x"}, "version")
	if !strings.HasPrefix(out, "herald ") {
		t.Errorf("version output: %s", out)
	}
}

func TestNoCommandShowsHelp(t *testing.T) {
	t.Parallel()
	out := mustRun(t, nil)
	for _, cmd := range []string{"serve", "relay", "migrate", "dlq", "stats", "tail", "version"} {
		if !strings.Contains(out, "  "+cmd+" ") {
			t.Errorf("herald without arguments does not list %s:\n%s", cmd, out)
		}
	}
}

// Each shell gets a script that names herald's commands; an unknown shell
// or a missing argument is a usage error (exit 2).
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, marker := range map[string]string{
		"bash": "__start_herald", "zsh": "#compdef herald", "fish": "complete -c herald",
		"powershell": "Register-ArgumentCompleter",
	} {
		out := mustRun(t, nil, "completion", shell)
		if !strings.Contains(out, marker) {
			t.Errorf("%s script lacks %q", shell, marker)
		}
	}
	for _, args := range [][]string{{"completion", "tcsh"}, {"completion"}} {
		if r := run(t, nil, args...); r.code != 2 {
			t.Errorf("herald %v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
}

// Options of one invocation have no variable: left in the environment they
// would change every later command. HERALD_STATUS=1 does not turn migrate
// into a listing; HERALD_JSON and HERALD_LIMIT change nothing.
func TestInvocationOptionsIgnoreTheEnvironment(t *testing.T) {
	t.Parallel()
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "h.db")
	env := []string{"HERALD_DATABASE_URL=" + dbURL, "HERALD_STATUS=1", "HERALD_JSON=true", "HERALD_LIMIT=-5", "HERALD_STATE=bogus"}
	if out := mustRun(t, env, "migrate"); !strings.Contains(out, "applied outbox 1") {
		t.Fatalf("migrate with HERALD_STATUS=1 in the environment did not migrate:\n%s", out)
	}
	if out := mustRun(t, env, "dlq", "list"); out != "no dead letters\n" {
		t.Fatalf("dlq list with HERALD_JSON, HERALD_LIMIT and HERALD_STATE set:\n%s", out)
	}
	// Deployment settings keep theirs, and a bad value names the variable.
	r := run(t, append(env, "HERALD_LOG_LEVEL=loud"), "migrate")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "HERALD_LOG_LEVEL") {
		t.Fatalf("bad HERALD_LOG_LEVEL: exit %d\n%s", r.code, r.stderr)
	}
}

// --config reads a YAML file of settings keyed by their variables; the
// environment and the command line rank above it, and a key that names no
// setting is refused with the file and the key.
func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "from-file.db")
	file := filepath.Join(dir, "herald.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("HERALD_DATABASE_URL: sqlite://" + dbPath + "\nHERALD_LOG_LEVEL: warn\n")
	mustRun(t, nil, "migrate", "--config", file)
	if _, err := os.Stat(dbPath); err != nil {
		t.Fatalf("migrate --config did not use the file's database: %v", err)
	}
	// HERALD_CONFIG names the file too; the environment beats it.
	envDB := filepath.Join(dir, "from-env.db")
	mustRun(t, []string{"HERALD_CONFIG=" + file, "HERALD_DATABASE_URL=sqlite://" + envDB}, "migrate")
	if _, err := os.Stat(envDB); err != nil {
		t.Fatalf("the environment did not beat the file: %v", err)
	}
	for body, want := range map[string]string{
		"HERALD_DATABSE_URL: x\n":  `"HERALD_DATABSE_URL" is not a setting`,
		"HERALD_STATUS: 1\n":       `"HERALD_STATUS" is not a setting`,
		"HERALD_WORKERS: [1, 2]\n": "HERALD_WORKERS must be a single value",
		"- not\n- a mapping\n":     "not a YAML mapping",
		"HERALD_LOG_LEVEL: loud\n": "HERALD_LOG_LEVEL",
	} {
		write(body)
		r := run(t, nil, "migrate", "--config", file)
		if r.code != cli.ExitUsage || !strings.Contains(r.stderr, want) {
			t.Errorf("config %q: exit %d, want 2 naming %q\n%s", body, r.code, want, r.stderr)
		}
	}
	// An empty variable is unset: the file's value applies.
	write("HERALD_LOG_LEVEL: loud\n")
	if r := run(t, []string{"HERALD_LOG_LEVEL="}, "migrate", "--config", file); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "loud") {
		t.Errorf("HERALD_LOG_LEVEL empty and the file's value bad: exit %d, want 2\n%s", r.code, r.stderr)
	}
	if r := run(t, nil, "migrate", "--config", filepath.Join(dir, "missing.yaml")); r.code != cli.ExitUsage {
		t.Errorf("a missing config file: exit %d, want 2", r.code)
	}
}
