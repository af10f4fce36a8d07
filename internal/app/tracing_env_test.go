package app

import (
	"context"
	"testing"
)

// The OTEL_* variables turn tracing on only with an OTLP endpoint, and
// never for none or a disabled SDK; other exporters and protocols are
// refused as usage errors.
func TestNewTracingFromEnvironment(t *testing.T) {
	t.Parallel()
	endpoint := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
	with := func(env map[string]string, more ...string) map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		for i := 0; i+1 < len(more); i += 2 {
			m[more[i]] = more[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		on    bool
		usage bool
	}{
		{"unset", nil, false, false},
		{"exporter without endpoint", with(nil, "OTEL_TRACES_EXPORTER", "otlp"), false, false},
		{"endpoint", endpoint, true, false},
		{"traces endpoint", with(nil, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces"), true, false},
		{"none", with(endpoint, "OTEL_TRACES_EXPORTER", "none"), false, false},
		{"disabled", with(endpoint, "OTEL_SDK_DISABLED", "true"), false, false},
		{"console", with(endpoint, "OTEL_TRACES_EXPORTER", "console"), false, true},
		{"grpc", with(endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), false, true},
		{"http/protobuf", with(endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), true, false},
	} {
		lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		tp, stop, err := newTracing(context.Background(), lookup)
		if tc.usage {
			if !IsUsageError(err) {
				t.Errorf("%s: error %v, want a usage error", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if (tp != nil) != tc.on || (stop != nil) != tc.on {
			t.Errorf("%s: tracing on = %v, want %v", tc.name, tp != nil, tc.on)
		}
		if stop != nil {
			if err := stop(context.Background()); err != nil {
				t.Errorf("%s: shutdown: %v", tc.name, err)
			}
		}
	}
}
