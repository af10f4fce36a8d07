package redisstream_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/redisstream"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw  string
		want redisstream.Config
	}{
		{"redis://127.0.0.1", redisstream.Config{Addr: "127.0.0.1:6379"}},
		{"redis://localhost:6380/", redisstream.Config{Addr: "localhost:6380"}},
		{"redis://redis.internal:6379/3", redisstream.Config{Addr: "redis.internal:6379", DB: 3}},
		{"redis://[::1]:7000/0", redisstream.Config{Addr: "[::1]:7000"}},
		{"redis://herald:s3cret@h:6379/0", redisstream.Config{Addr: "h:6379", Username: "herald", Password: "s3cret"}},
		{"redis://:s3cret@h", redisstream.Config{Addr: "h:6379", Password: "s3cret"}},
		{"redis://u:p%40ss%2Fw%3Fo%23rd@h", redisstream.Config{Addr: "h:6379", Username: "u", Password: "p@ss/w?o#rd"}},
		{"redis://h?stream=orders.events", redisstream.Config{Addr: "h:6379", Stream: "orders.events"}},
		{"redis://h?maxlen=100000", redisstream.Config{Addr: "h:6379", MaxLen: 100000}},
		{"redis://h?maxlen=0", redisstream.Config{Addr: "h:6379"}},
		{"redis://h?client_name=orders-relay", redisstream.Config{Addr: "h:6379", ClientName: "orders-relay"}},
		{"redis://h?dial_timeout=2s&read_timeout=1500ms&write_timeout=1m", redisstream.Config{
			Addr: "h:6379", DialTimeout: 2 * time.Second, ReadTimeout: 1500 * time.Millisecond, WriteTimeout: time.Minute,
		}},
		{"redis://h?max_message_bytes=1048576", redisstream.Config{Addr: "h:6379", MaxMessageBytes: 1 << 20}},
	} {
		got, err := redisstream.ParseURL(tc.raw)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseURL(%q) = %#v, want %#v", tc.raw, got, tc.want)
		}
	}
}

func TestParseURLTLS(t *testing.T) {
	t.Parallel()
	cfg, err := redisstream.ParseURL("rediss://:pw@cache.example:6380/1?stream=s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.ServerName != "cache.example" || cfg.TLS.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS config %+v, want server name cache.example, TLS 1.2 or later", cfg.TLS)
	}
	if cfg.Addr != "cache.example:6380" || cfg.DB != 1 || cfg.Password != "pw" || cfg.Stream != "s" {
		t.Fatalf("config %s", cfg)
	}
}

func TestParseURLRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw, want string // want: a piece of the error
	}{
		{"redis://h?pool_size=10", `unknown URL setting "pool_size"`},
		{"redis://h?stream=a&db=2", `unknown URL setting "db"`},
		{"redis://h?Stream=a", `unknown URL setting "Stream"`},
		{"redis://h?stream=a&stream=b", "stream given 2 times"},
		{"redis://h?stream=", "stream"},
		{"redis://h?maxlen=-1", "maxlen"},
		{"redis://h?maxlen=ten", "maxlen"},
		{"redis://h?maxlen=+5", "maxlen"},
		{"redis://h?client_name=a%20b", "client_name"},
		{"redis://h?client_name=", "client_name"},
		{"redis://h?dial_timeout=5", "dial_timeout"},
		{"redis://h?read_timeout=0s", "read_timeout"},
		{"redis://h?write_timeout=-1s", "write_timeout"},
		{"redis://h?max_message_bytes=0", "max_message_bytes"},
		{"redis://h?max_message_bytes=1e6", "max_message_bytes"},
		{"redis://h?a=%zz", "query"},
		{"http://h", `scheme "http"`},
		{"h:6379", "scheme"},
		{"127.0.0.1:6379", "malformed"},
		{"", "scheme"},
		{"redis://", "no host"},
		{"redis:///0", "no host"},
		{"redis://h:0", "port"},
		{"redis://h:99999", "port"},
		{"redis://h:port", "malformed"},
		{"redis://h/x", "path"},
		{"redis://h/-1", "path"},
		{"redis://h/1/2", "path"},
		{"redis://h#frag", "#"},
		{"redis://user@h", "user name but no password"},
		{"redis:h", "malformed"},
		{"redis://h\n", "malformed"},
	} {
		cfg, err := redisstream.ParseURL(tc.raw)
		if err == nil {
			t.Errorf("ParseURL(%q) = %s, want an error", tc.raw, cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q): %v, want it to mention %q", tc.raw, err, tc.want)
		}
	}
}

// TestParseURLHidesPassword: a password never shows in an error, whatever
// made the URL malformed, nor in the config's renderings.
func TestParseURLHidesPassword(t *testing.T) {
	t.Parallel()
	const secret = "Zq7secretPW"
	for _, raw := range []string{
		"redis://u:" + secret + "@h:bad",
		"redis://u:" + secret + "/x@h",
		"redis://u:" + secret + "?x@h",
		"redis://u:" + secret + "#x@h",
		"redis://u:pre#" + secret + "@h",
		"redis://u:pre/" + secret + "@h",
		"redis://u:pre?" + secret + "=1@h",
		"redis://u:pre?stream=" + secret + "@h",
		"redis://u:pre?maxlen=" + secret + "@h",
		"redis://u:" + secret + "@h?nope=1",
		"redis://u:" + secret + "@h?maxlen=x",
		"redis://u:" + secret + "@h/x",
		"redis://u:" + secret + "@h:0",
		"redis://" + secret + "@h",
		"redis://u:" + secret + "@/0",
		"redis://u:" + secret + "@h\x7f",
		"redis://u:" + secret + " @h",
		"rediss://u:" + secret + "@h:70000",
		"ftp://u:" + secret + "@h",
	} {
		_, err := redisstream.ParseURL(raw)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", raw)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "secretPW") {
			t.Errorf("ParseURL(%q): error %q shows the password", raw, err)
		}
	}

	cfg, err := redisstream.ParseURL("redis://herald:" + secret + "@h:6379/2?stream=orders.events&maxlen=5")
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "cfg", cfg)
	var text bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "cfg", cfg)
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"String": cfg.String(), "%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg),
		"%#v": fmt.Sprintf("%#v", cfg), "%s": fmt.Sprintf("%s", cfg), "slog JSON": js.String(), //nolint:staticcheck // the test checks the %s verb itself, not String
		"slog text": text.String(), "json": string(raw),
	} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the password: %s", name, s)
		}
		if !strings.Contains(s, "xxxxx") {
			t.Errorf("%s does not mark the password: %s", name, s)
		}
	}
	if want := "redis://herald:xxxxx@h:6379/2?maxlen=5&stream=orders.events"; cfg.String() != want {
		t.Errorf("String() = %s, want %s", cfg.String(), want)
	}
}

// TestStringRoundTrip: String renders a URL that ParseURL reads back into
// the same config, password aside.
func TestStringRoundTrip(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://h:6379/0",
		"redis://u:xxxxx@h:1/15?client_name=c&dial_timeout=2s&max_message_bytes=9&maxlen=3&read_timeout=1s&stream=a+b&write_timeout=3s",
		"rediss://:xxxxx@[::1]:6380/0?stream=orders.events",
	} {
		cfg, err := redisstream.ParseURL(raw)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", raw, err)
		}
		again, err := redisstream.ParseURL(cfg.String())
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", cfg.String(), err)
		}
		if !reflect.DeepEqual(again, cfg) {
			t.Fatalf("round trip of %s: %#v, want %#v", raw, again, cfg)
		}
	}
}

// FuzzParseURL: ParseURL never panics; what it accepts renders (String)
// without the password and parses back to the same config; and an error
// never shows a password placed into the URL.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{
		"redis://127.0.0.1:6379/0",
		"redis://u:p@h:6379/3?stream=orders.events&maxlen=10",
		"rediss://:pw@h?client_name=x&dial_timeout=2s&read_timeout=1s&write_timeout=1s&max_message_bytes=100",
		"redis://[::1]:6379",
		"redis://u:p#x@h",
		"redis://u:p/x@h",
		"redis://u:p?x@h",
		"redis://h?unknown=1",
		"redis://h?maxlen=-1",
		"redis://h/x",
		"redis://user@h",
		"http://h",
		"",
		// Inputs the fuzzer once failed on.
		"redis://0:@0",
		"redis://::",
		"redis://:x@0",
		"0/\xf0000",
	} {
		f.Add(seed, "Pw0rd")
	}
	f.Fuzz(func(t *testing.T, raw, secret string) {
		cfg, err := redisstream.ParseURL(raw)
		if err == nil {
			s := cfg.String()
			if cfg.Password != "" {
				other := cfg
				other.Password = "another password"
				if other.String() != s {
					t.Fatalf("String() %q depends on the password's value (%q with another)", s, other.String())
				}
			}
			again, err := redisstream.ParseURL(s)
			if err != nil {
				t.Fatalf("ParseURL(%q) (String of %q): %v", s, raw, err)
			}
			if cfg.Password != "" {
				again.Password = cfg.Password // String hides it
			}
			if !reflect.DeepEqual(again, cfg) {
				t.Fatalf("round trip of %q through %q: %#v, want %#v", raw, s, again, cfg)
			}
		}

		// A password made of a distinctive start and the fuzzed secret,
		// unescaped, before the fuzzed URL's tail: no error may show its
		// start, wherever the secret's characters make the URL split.
		const mark = "Zq7Kw"
		if strings.Contains(raw, mark) || strings.Contains(secret, "@") {
			return
		}
		withSecret := "redis://u:" + mark + secret + "@" + strings.TrimPrefix(raw, "redis://")
		if _, err := redisstream.ParseURL(withSecret); err != nil && strings.Contains(err.Error(), mark) {
			t.Fatalf("ParseURL(%q): error %q shows the password", withSecret, err)
		}
	})
}
