package cli

import (
	"runtime/debug"
	"testing"
)

func TestResolveBuild(t *testing.T) {
	t.Parallel()
	info := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name            string
		version, commit string
		info            *debug.BuildInfo
		want            build
	}{
		{"ldflags win", "v2.0.0", "feedbeef", info, build{"v2.0.0", "feedbeef", "go1.99.1"}},
		{"build info", "", "", info, build{"v1.4.0", "0123abcd-dirty", "go1.99.1"}},
		{"devel build", "", "", &debug.BuildInfo{GoVersion: "go1.99.2", Main: debug.Module{Version: "(devel)"}}, build{"devel", "unknown", "go1.99.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := resolveBuild(tt.version, tt.commit, tt.info); got != tt.want {
				t.Errorf("resolveBuild = %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := resolveBuild("", "", nil); got.Version != "devel" || got.Commit != "unknown" || got.Go == "" {
		t.Errorf("resolveBuild without build info = %+v", got)
	}
}
