package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version and Commit are set at build time:
//
//	go build -ldflags "-X github.com/heraldhq/herald/internal/cli.Version=v1.2.3 -X github.com/heraldhq/herald/internal/cli.Commit=$(git rev-parse HEAD)" ./cmd/herald
//
// Left empty, they come from the binary's build information.
var (
	Version string
	Commit  string
)

// build describes the running binary.
type build struct {
	Version, Commit, Go string
}

// buildVersion returns Version and Commit, or what debug.ReadBuildInfo
// knows when they were not set at build time.
func buildVersion() build {
	info, _ := debug.ReadBuildInfo()
	return resolveBuild(Version, Commit, info)
}

func resolveBuild(version, commit string, info *debug.BuildInfo) build {
	b := build{Version: version, Commit: commit, Go: runtime.Version()}
	if info != nil {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		if info.GoVersion != "" {
			b.Go = info.GoVersion
		}
		var revision, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if b.Commit == "" && revision != "" {
			b.Commit = revision
			if modified == "true" {
				b.Commit += "-dirty"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:         "version",
		Short:       "Print the version, commit and Go version",
		Args:        noArgs,
		Annotations: map[string]string{annotationNoLog: "true"},
		RunE: func(*cobra.Command, []string) error {
			b := buildVersion()
			_, err := fmt.Fprintf(c.stdout, "herald %s\ncommit %s\ngo     %s %s/%s\n",
				b.Version, b.Commit, b.Go, runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
