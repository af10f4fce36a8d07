package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/cli"
)

// A password given in any form pgx accepts never reaches the output: not
// when the database cannot be reached (a port on 127.0.0.1 where nothing
// listens), not when the connection string is refused.
func TestPasswordsStayHidden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		code int
	}{
		{"url query", []string{"migrate", "--db", "postgres://u@127.0.0.1:1/db?password=SECRET"}, nil, cli.ExitFailure},
		{"url userinfo", []string{"migrate", "--db", "postgres://u:SECRET@127.0.0.1:1/db"}, nil, cli.ExitFailure},
		{"url sslpassword", []string{"migrate", "--status", "--db", "postgresql://u@127.0.0.1:1/db?sslmode=disable&sslpassword=SECRET&password=SECRET"}, nil, cli.ExitFailure},
		{"key=value", []string{"migrate", "--db", "host=127.0.0.1 port=1 user=u dbname=db password=SECRET"}, nil, cli.ExitFailure},
		{"key=value quoted", []string{"migrate", "--db", "host=127.0.0.1 port=1 user=u dbname=db password='SE CRET'"}, nil, cli.ExitFailure},
		{"key=value from the environment", []string{"stats"}, []string{"HERALD_DATABASE_URL=host=127.0.0.1 port=1 password=SECRET"}, cli.ExitFailure},
		{"dlq list", []string{"dlq", "list", "--db", "postgres://u:SECRET@127.0.0.1:1/db"}, nil, cli.ExitFailure},
		{"bad port", []string{"migrate", "--db", "postgres://u:SECRET@127.0.0.1:notaport/db"}, nil, cli.ExitUsage},
		{"bad key=value", []string{"migrate", "--db", "host=127.0.0.1 password='SECRET"}, nil, cli.ExitUsage},
		{"unquoted space", []string{"migrate", "--db", "host=127.0.0.1 password=SE CRET port=1"}, nil, cli.ExitUsage},
		{"no scheme", []string{"migrate", "--db", "u:SECRET@127.0.0.1:1/db"}, nil, cli.ExitUsage},
		{"nats token", []string{"serve", "--broker", "nats://SECRET@127.0.0.1:1", "--db", "postgres://u:SECRET@127.0.0.1:1/db"}, nil, cli.ExitFailure},
		{"broker userinfo", []string{"serve", "--broker", "nats://u:SECRET@127.0.0.1:99999"}, nil, cli.ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := append([]string{"HERALD_DATA_DIR=" + filepath.Join(t.TempDir(), "data")}, tt.env...)
			r := run(t, env, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tt.code, r.stdout, r.stderr)
			}
			if out := r.stdout + r.stderr; strings.Contains(out, "CRET") {
				t.Errorf("the output shows the password:\n%s", out)
			}
			if !strings.Contains(r.stderr, "xxxxx") {
				t.Errorf("the error does not name the database, redacted:\n%s", r.stderr)
			}
		})
	}
}
