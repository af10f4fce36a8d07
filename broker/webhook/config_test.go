package webhook_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/webhook"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"http://127.0.0.1:8080/hook",
		"https://hooks.example.com",
		"https://hooks.example.com/",
		"https://hooks.example.com/services/T0/B0/XYZ?key=abc%2Fdef&x=1&x=2",
		"HTTPS://Hooks.Example.com/a%20b",
		"http://[::1]:9000/hook",
		"https://token@hooks.example.com/hook", // a user name alone is no password
	} {
		cfg, err := webhook.ParseURL(raw)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", raw, err)
			continue
		}
		if cfg.URL != raw {
			t.Errorf("ParseURL(%q).URL = %q, want it unchanged", raw, cfg.URL)
		}
		if cfg.Timeout != 0 || cfg.Concurrency != 0 || cfg.Secrets != nil {
			t.Errorf("ParseURL(%q) set more than the URL: %v", raw, cfg)
		}
	}
	for _, tc := range []struct{ raw, want string }{
		{"", "empty"},
		{"ftp://example.com/hook", `scheme "ftp"`},
		{"nats://127.0.0.1:4222", `scheme "nats"`},
		{"example.com/hook", "no scheme"},
		{"//example.com/hook", "no scheme"},
		{"http:example.com", "no host"},
		{"http:///path", "no host"},
		{"http://:8080/path", "no host name"},
		{"http://example.com:0/", "port must be"},
		{"http://example.com:65536/", "port must be"},
		{"http://example.com:http/", "invalid port"},
		{"http://example.com/hook#frag", "fragment"},
		{"http://example.com/hook#", "fragment"},
		{"http://exa mple.com/", "invalid character"},
		{"http://example.com/%zz", "invalid URL escape"},
		{"https://user:hunter2secret@example.com/hook", "password"},
		{"https://:hunter2secret@example.com/hook", "password"},
		{"https://user:hunter2%zzsecret@example.com/hook", "password"}, // unparsable, still not quoted
	} {
		_, err := webhook.ParseURL(tc.raw)
		switch {
		case err == nil:
			t.Errorf("ParseURL(%q) succeeded, want an error about %s", tc.raw, tc.want)
		case !errors.Is(err, webhook.ErrInvalidURL):
			t.Errorf("ParseURL(%q): %v does not wrap ErrInvalidURL", tc.raw, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("ParseURL(%q): %q does not say %q", tc.raw, err, tc.want)
		case strings.Contains(err.Error(), "hunter2"):
			t.Errorf("ParseURL(%q): the error %q quotes the password", tc.raw, err)
		}
	}
}

// TestEndpointRedacted: logs and errors name the endpoint by its host only,
// since the path, query and user name may be the endpoint's credentials.
func TestEndpointRedacted(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://hooks.example.com":                             "https://hooks.example.com",
		"https://hooks.example.com/":                            "https://hooks.example.com/",
		"https://tok@hooks.example.com:8443/services/T0/SECRET": "https://hooks.example.com:8443/…",
		"http://127.0.0.1/?key=SECRET":                          "http://127.0.0.1/?…",
		"http://127.0.0.1/p/SECRET?key=SECRET":                  "http://127.0.0.1/…?…",
	} {
		if got := (webhook.Config{URL: raw}).Endpoint(); got != want {
			t.Errorf("Endpoint of %s = %q, want %q", raw, got, want)
		}
	}
}

func TestParseSecrets(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0xfb}, 32)
	std := base64.StdEncoding.EncodeToString(key)
	for _, ok := range []string{
		"whsec_" + std,
		std,
		"whsec_" + strings.TrimRight(base64.StdEncoding.EncodeToString(key[:31]), "="), // padding left out
		"whsec_" + base64.StdEncoding.EncodeToString(key[:24]),
		"whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat(key, 2)),
	} {
		if _, err := webhook.ParseSecret(ok); err != nil {
			t.Errorf("ParseSecret(%q): %v", ok, err)
		}
	}
	got, err := webhook.ParseSecrets("  whsec_" + std + "\t" + specSecret + " \n")
	if err != nil || len(got) != 2 {
		t.Fatalf("ParseSecrets of two: %d, %v", len(got), err)
	}
	for _, tc := range []struct{ raw, want string }{
		{"", "none given"},
		{"   ", "none given"},
		{"whsec_", "empty"},
		{"whsec_" + base64.StdEncoding.EncodeToString(key[:23]), "23 bytes"},
		{"whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat(key, 3)), "96 bytes"},
		{"whsec_" + std[:20] + "!!" + std[22:], "not whsec_BASE64"},
		{"whsec_" + base64.URLEncoding.EncodeToString(key), "not whsec_BASE64"},
		{specSecret + " whsec_" + std[:10], "secret 2 of 2"},
	} {
		_, err := webhook.ParseSecrets(tc.raw)
		switch {
		case err == nil:
			t.Errorf("ParseSecrets(%q) succeeded, want %s", tc.raw, tc.want)
		case !errors.Is(err, webhook.ErrInvalidSecret):
			t.Errorf("ParseSecrets(%q): %v does not wrap ErrInvalidSecret", tc.raw, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("ParseSecrets(%q): %q does not say %q", tc.raw, err, tc.want)
		case len(tc.raw) > 12 && strings.Contains(err.Error(), strings.TrimPrefix(strings.Fields(tc.raw)[0], "whsec_")[:8]):
			t.Errorf("ParseSecrets(%q): the error %q quotes the secret", tc.raw, err)
		}
	}
}

// TestSecretNeverPrinted: no fmt verb, slog handler or JSON encoding of a
// Secret or a Config shows the key, in base64 or as bytes.
func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	s, err := webhook.ParseSecret(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	cfg := webhook.Config{URL: "https://u@example.com/p?k=v", Secrets: []webhook.Secret{s, s}}
	key, _ := base64.StdEncoding.DecodeString(specSecret[len("whsec_"):])
	leaks := []string{
		specSecret[len("whsec_"):],
		fmt.Sprint(key), fmt.Sprintf("%x", key), fmt.Sprintf("%X", key), fmt.Sprintf("% x", key), //nolint:staticcheck // the leak is the bytes printed as numbers, not as a string
		fmt.Sprintf("%d", key[0]) + " " + fmt.Sprintf("%d", key[1]),
		string(key[:8]),
	}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%T"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, &cfg), fmt.Sprintf(verb, cfg.Secrets))
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg, "secret", s, "secrets", cfg.Secrets)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg, "secret", s)
	out = append(out, logged.String())
	js, err := json.Marshal(cfg) //nolint:staticcheck // cfg.Client is nil here; the test checks what a caller marshalling a Config would show
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(js))
	for _, o := range out {
		for _, leak := range leaks {
			if strings.Contains(o, leak) {
				t.Fatalf("the key shows in %q (as %q)", o, leak)
			}
		}
	}
	if got := cfg.String(); got != "webhook{url=https://example.com/…?… secrets=2 timeout=15s concurrency=16}" {
		t.Fatalf("Config.String() = %q", got)
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	other, _ := newSecret(t)
	cfg, err := webhook.Config{URL: "http://127.0.0.1/"}.FromEnv(env(map[string]string{
		webhook.EnvSecret:      specSecret + " " + other,
		webhook.EnvTimeout:     "2500ms",
		webhook.EnvConcurrency: " 64 ",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Secrets) != 2 || cfg.Timeout != 2500*time.Millisecond || cfg.Concurrency != 64 || cfg.URL != "http://127.0.0.1/" {
		t.Fatalf("FromEnv: %v", cfg)
	}
	keep := webhook.Config{Timeout: time.Second, Concurrency: 3}
	if got, err := keep.FromEnv(env(nil)); err != nil || got.Timeout != time.Second || got.Concurrency != 3 || got.Secrets != nil {
		t.Fatalf("FromEnv with nothing set changed the config: %v, %v", got, err)
	}
	for name, kv := range map[string]map[string]string{
		webhook.EnvSecret:      {webhook.EnvSecret: "whsec_dG9vIHNob3J0IGtleQ=="},
		webhook.EnvTimeout:     {webhook.EnvTimeout: "10"},
		webhook.EnvConcurrency: {webhook.EnvConcurrency: "0"},
	} {
		_, err := webhook.Config{}.FromEnv(env(kv))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("FromEnv(%v): %v, want an error naming %s", kv, err, name)
		}
		if err != nil && strings.Contains(err.Error(), "dG9vIHNob3J0") {
			t.Errorf("FromEnv: the error %q quotes the secret", err)
		}
	}
	_, err = webhook.Config{}.FromEnv(env(map[string]string{webhook.EnvSecret: ""}))
	if !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("an empty %s: %v, want ErrInvalidSecret", webhook.EnvSecret, err)
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	_, s := newSecret(t)
	for _, tc := range []struct {
		cfg  webhook.Config
		want error
	}{
		{webhook.Config{URL: "http://127.0.0.1/"}, webhook.ErrInvalidSecret},
		{webhook.Config{URL: "http://127.0.0.1/", Secrets: []webhook.Secret{{}}}, webhook.ErrInvalidSecret},
		{webhook.Config{URL: "tcp://127.0.0.1/", Secrets: []webhook.Secret{s}}, webhook.ErrInvalidURL},
		{webhook.Config{Secrets: []webhook.Secret{s}}, webhook.ErrInvalidURL},
	} {
		if p, err := webhook.New(tc.cfg); !errors.Is(err, tc.want) {
			if p != nil {
				_ = p.Close()
			}
			t.Errorf("New(%v): %v, want %v", tc.cfg, err, tc.want)
		}
	}
	if _, err := webhook.NewVerifier(); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewVerifier(): %v, want ErrInvalidSecret", err)
	}
}
