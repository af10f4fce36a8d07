// Package cli is Herald's command line: one binary, herald, with every
// command (README.md lists them). Main is the whole program behind a thin main package,
// so that tests run it in-process with their own arguments, environment and
// output writers.
//
// The settings of a deployment can also be set with environment variables,
// HERALD_ and the flag's name in upper case with dashes as underscores
// (--batch-size is HERALD_BATCH_SIZE), except --db and --broker, whose
// variables are HERALD_DATABASE_URL and HERALD_BROKER_URL. A flag beats its
// variable, which beats the default. Options of one invocation have none.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/heraldhq/herald/internal/app"
)

// Exit statuses of Main.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command failed while running
	ExitUsage   = 2 // bad arguments, flags or settings; nothing was started
	// ExitPending is herald migrate --status's answer when migrations are
	// pending, so that a deploy script can test for it.
	ExitPending = 3
)

// errPending makes Main exit with ExitPending; what is pending is printed.
var errPending = errors.New("migrations are pending")

// Main runs the herald command line with args (without the program name),
// writing command output to stdout and logs and errors to stderr. env holds
// the environment as KEY=VALUE strings (os.Environ()). It returns the exit
// status. Long-running commands stop gracefully when ctx ends.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, env []string) int {
	c := newCLI(stdout, stderr, env)
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(strings.NewReader(""))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, errPending) {
		return ExitPending
	}
	_, _ = fmt.Fprintf(stderr, "herald: %v\n", err)
	if app.IsUsageError(err) {
		if cmd != nil {
			_, _ = fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return ExitUsage
	}
	return ExitFailure
}

// cli holds one run's writers, environment and parsed settings.
type cli struct {
	stdout, stderr io.Writer
	env            map[string]string
	s              settings
	log            *slog.Logger
}

func newCLI(stdout, stderr io.Writer, env []string) *cli {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return &cli{stdout: stdout, stderr: stderr, env: m, log: slog.New(slog.DiscardHandler)}
}

// usageError marks err as the caller's mistake (exit status 2).
func usageError(err error) error {
	if err == nil || app.IsUsageError(err) {
		return err
	}
	return &app.UsageError{Err: err}
}

func usagef(format string, args ...any) error {
	return &app.UsageError{Err: fmt.Errorf(format, args...)}
}

const rootLong = `Herald is an event-driven order service on the transactional outbox pattern:
an order change and its events commit in one database transaction, a relay
publishes the events to a message broker, and events that keep failing land in
a dead-letter queue for an operator to inspect and replay.

With no flags, herald serve runs on a SQLite file and an embedded NATS server
under ./herald-data and listens on 127.0.0.1:8080.

The settings of a deployment can also be set with environment variables:
HERALD_ and the flag name in upper case with dashes as underscores
(--batch-size is HERALD_BATCH_SIZE); --db and --broker read
HERALD_DATABASE_URL and HERALD_BROKER_URL. A flag beats its variable, which
beats the default. Options of one invocation (--json, --status, filters) have
no variable; each flag's help names its variable when it has one.`

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Event-driven order service on the transactional outbox pattern",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRunE,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return c.prepare(cmd)
		},
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	c.s.addShared(root.PersistentFlags())

	// Each command lists only the flags it uses.
	for _, sub := range []struct {
		cmd *cobra.Command
		use int
	}{
		{c.serveCommand(), useDatabase | useBroker | useAPI},
		{c.relayCommand(), useDatabase | useBroker},
		{c.migrateCommand(), useDatabase},
		{c.dlqCommand(), useDatabase},
		{c.statsCommand(), useDatabase},
		{c.checkCommand(), useDatabase | useBroker},
		{c.tailCommand(), useBroker},
		{c.benchCommand(), useDatabase | useBroker},
		{c.versionCommand(), 0},
		{c.completionCommand(), 0},
	} {
		c.s.addGroups(sub.cmd.PersistentFlags(), sub.use)
		root.AddCommand(sub.cmd)
	}
	annotateEnv(root)
	return root
}

// groupRunE runs a command that only groups subcommands: without arguments
// it shows the help; an unknown subcommand is a usage error.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// prepare applies the environment to the flags not given on the command
// line and sets up logging. It runs before every command.
func (c *cli) prepare(cmd *cobra.Command) error {
	if err := c.loadConfigFile(cmd); err != nil {
		return err
	}
	if err := applyEnv(cmd.Flags(), c.env); err != nil {
		return err
	}
	if cmd.Annotations[annotationNoLog] != "" {
		return nil
	}
	log, err := newLogger(c.stderr, c.s.logLevel, c.s.logFormat)
	if err != nil {
		return c.fromEnv(cmd, err, "log-level", "log-format")
	}
	c.log = log
	return nil
}

// fromEnv names the variable in err when one of flags that err is about
// was set from its environment variable rather than on the command line.
func (c *cli) fromEnv(cmd *cobra.Command, err error, flags ...string) error {
	for _, name := range flags {
		f := cmd.Flags().Lookup(name)
		v := EnvVar(name)
		if f != nil && !f.Changed && v != "" && c.env[v] != "" && strings.Contains(err.Error(), "--"+name+" ") {
			return usagef("%s (from %s)", err.Error(), v)
		}
	}
	return err
}

// annotationNoLog marks commands that need no logger (and so ignore bad
// log settings).
const annotationNoLog = "herald/no-log"

// EnvVar returns the environment variable of a flag, or "" for a flag of
// one invocation. Only the settings of a deployment have variables (where
// the database and the broker are, the listeners, tokens, logging, the
// relay's tuning): an option of one command (--status, --json, --limit,
// filters, --all, --reason, the bench's modes) left in the environment
// would silently change every later command, such as HERALD_STATUS=1
// turning herald migrate into a listing.
func EnvVar(flag string) string {
	switch flag {
	case "db":
		return "HERALD_DATABASE_URL"
	case "broker":
		return "HERALD_BROKER_URL"
	case "config":
		return configFileVar
	case "mode":
		return "HERALD_RELAY_MODE"
	}
	if !deploymentSettings[flag] {
		return ""
	}
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// deploymentSettings are the flags with environment variables.
var deploymentSettings = map[string]bool{
	"data-dir": true, "http-addr": true, "embedded-nats-addr": true, "metrics-addr": true, "max-connections": true,
	"api-token": true, "admin-token": true, "log-level": true, "log-format": true,
	"batch-size": true, "workers": true, "poll-interval": true, "poll-only": true, "max-attempts": true,
	"retry-base": true, "retry-cap": true, "move-on-past-dead-letters": true, "source": true,
	"no-migrate": true, "shutdown-timeout": true, "mode": true, "cdc-slot": true, "delete-in-tx": true, "wal-messages": true,
	"health-max-lag": true, "health-max-dead-letters": true, "health-max-retry-rate": true,
}

// applyEnv sets each flag of fs not given on the command line from its
// environment variable, if that is set and not empty.
func applyEnv(fs *pflag.FlagSet, env map[string]string) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := EnvVar(f.Name)
		if name == "" {
			return
		}
		v, ok := env[name]
		if !ok || v == "" {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, usagef("invalid value %q for %s (--%s): %v", v, name, f.Name, err))
		}
	})
	return errors.Join(errs...)
}

// annotateEnv appends each flag's variable to its help text, once per flag
// (persistent flags are shared by every command).
func annotateEnv(cmd *cobra.Command) {
	seen := map[*pflag.Flag]bool{}
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{cmd.PersistentFlags(), cmd.Flags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if seen[f] || f.Name == "help" {
					return
				}
				seen[f] = true
				if v := EnvVar(f.Name); v != "" {
					f.Usage += " [$" + v + "]"
				}
			})
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
}

// newLogger returns the process's logger on w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lvl = slog.LevelDebug
	case "info", "":
		lvl = slog.LevelInfo
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}
