package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestHelpNamesEveryVariable checks that the --help of every command lists
// each of its flags, inherited ones included, with its variable.
func TestHelpNamesEveryVariable(t *testing.T) {
	t.Parallel()
	root := newCLI(nil, nil, nil).rootCommand()
	var cmds []*cobra.Command
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		cmds = append(cmds, cmd)
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, cmd := range cmds {
		path := strings.Fields(cmd.CommandPath())[1:]
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append(path, "--help"), &stdout, &stderr, nil)
		if code != ExitOK {
			t.Fatalf("herald %v --help: exit %d: %s", path, code, stderr.String())
		}
		help := stdout.String()
		lines := strings.Split(help, "\n")
		cmd.InheritedFlags()
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			if EnvVar(f.Name) == "" {
				if strings.Contains(help, "--"+f.Name) && strings.Contains(help, "HERALD_"+strings.ToUpper(f.Name)) {
					t.Errorf("herald %v --help names a variable for --%s, which must be typed", path, f.Name)
				}
				return
			}
			found := false
			for _, l := range lines {
				// Flag lines read "      --name type   usage".
				fields := strings.Fields(l)
				if len(fields) > 0 && fields[0] == "--"+f.Name {
					found = true
					if !strings.Contains(l, "[$"+EnvVar(f.Name)+"]") {
						t.Errorf("herald %v --help: the line of --%s does not name $%s:\n%s", path, f.Name, EnvVar(f.Name), l)
					}
				}
			}
			if !found {
				t.Errorf("herald %v --help does not list --%s:\n%s", path, f.Name, help)
			}
		})
	}
	if !strings.Contains(rootLong, "HERALD_BATCH_SIZE") {
		t.Error("the root help does not explain how variables are named")
	}
}

// TestREADMESettings checks the settings table of README.md against the
// flags: every flag of serve is in it, with its variable and its default.
func TestREADMESettings(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### Settings")
	if !ok {
		t.Fatal("README.md has no Settings section")
	}
	rows := map[string][2]string{} // flag → variable, default
	for line := range strings.Lines(section) {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`--") {
			if len(rows) > 0 && !strings.HasPrefix(line, "|") {
				break // the end of the table
			}
			continue
		}
		cell := func(i int) string { return strings.Trim(strings.TrimSpace(cells[i]), "`") }
		rows[strings.TrimPrefix(cell(1), "--")] = [2]string{cell(2), cell(3)}
	}

	root := newCLI(nil, nil, nil).rootCommand()
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	serve.InheritedFlags()
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		row, ok := rows[f.Name]
		if !ok {
			t.Errorf("README.md's settings table lacks --%s", f.Name)
			return
		}
		delete(rows, f.Name)
		if row[0] != EnvVar(f.Name) {
			t.Errorf("README.md: --%s reads %s, not %s", f.Name, EnvVar(f.Name), row[0])
		}
		want := f.DefValue
		switch {
		case f.Name == "db":
			want = "sqlite://<data dir>/herald.db"
			if !strings.Contains(f.Usage, "(default "+want+")") {
				t.Errorf("--db help does not give its default %s: %s", want, f.Usage)
			}
		case want == "":
			want = "none"
		}
		if row[1] != want {
			t.Errorf("README.md: --%s defaults to %q, not %q", f.Name, want, row[1])
		}
	})
	for name := range rows {
		t.Errorf("README.md's settings table has --%s, which herald serve does not take", name)
	}
}

// Each command lists only the flags it uses: the operator commands have no
// listener or token flags, tail no database, version neither.
func TestCommandsListOnlyTheirFlags(t *testing.T) {
	t.Parallel()
	for args, absent := range map[string][]string{
		"version":  {"--db", "--broker", "--http-addr", "--batch-size"},
		"dlq list": {"--http-addr", "--api-token", "--admin-token", "--broker", "--workers"},
		"stats":    {"--http-addr", "--broker", "--embedded-nats-addr"},
		"migrate":  {"--http-addr", "--broker", "--admin-token"},
		"tail":     {"--db", "--http-addr", "--api-token"},
		"relay":    {"--http-addr", "--api-token", "--admin-token"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append(strings.Fields(args), "--help"), &stdout, &stderr, nil)
		if code != ExitOK {
			t.Fatalf("herald %s --help: exit %d: %s", args, code, stderr.String())
		}
		for _, flag := range absent {
			if strings.Contains(stdout.String(), flag+" ") {
				t.Errorf("herald %s --help lists %s, which it does not use", args, flag)
			}
		}
	}
	var stdout, stderr bytes.Buffer
	Main(context.Background(), []string{"serve", "--help"}, &stdout, &stderr, nil)
	for _, flag := range []string{"--db", "--broker", "--http-addr", "--api-token", "--data-dir", "--log-level", "--config"} {
		if !strings.Contains(stdout.String(), flag+" ") {
			t.Errorf("herald serve --help lacks %s", flag)
		}
	}
}
