package rabbitmq_test

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/rabbitmq"
)

func TestParseURLSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw  string
		want rabbitmq.Config
	}{
		{"amqp://", rabbitmq.Config{URL: "amqp://"}},
		{"amqp://guest:guest@127.0.0.1:5672/", rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"}},
		{"amqps://u:p@mq.example.com/prod", rabbitmq.Config{URL: "amqps://u:p@mq.example.com/prod"}},
		{"amqp://h/%2F?exchange=orders.events", rabbitmq.Config{URL: "amqp://h/%2F", Exchange: "orders.events"}},
		{
			"amqps://herald:s3cr%40t@mq:5671/orders?exchange=orders.events&queue=orders&unroutable=permanent" +
				"&confirm_timeout=5s&connect_timeout=2s&heartbeat=30s&connection_name=herald-eu&max_message_size=1048576" +
				"&cacertfile=/etc/ca.pem&certfile=/etc/c.pem&keyfile=/etc/k.pem",
			rabbitmq.Config{
				URL: "amqps://herald:s3cr%40t@mq:5671/orders", Exchange: "orders.events", Queue: "orders",
				Unroutable: rabbitmq.UnroutablePermanent, ConfirmTimeout: 5 * time.Second, ConnectTimeout: 2 * time.Second,
				Heartbeat: 30 * time.Second, ConnectionName: "herald-eu", MaxMessageSize: 1 << 20,
				CACertFile: "/etc/ca.pem", CertFile: "/etc/c.pem", KeyFile: "/etc/k.pem",
			},
		},
		{"amqp://h?unroutable=drop", rabbitmq.Config{URL: "amqp://h", Unroutable: rabbitmq.UnroutableDrop}},
		{"amqp://h?unroutable=retry&connection_name=a%20b", rabbitmq.Config{URL: "amqp://h", ConnectionName: "a b"}},
		{"amqp://[::1]:5673/v", rabbitmq.Config{URL: "amqp://[::1]:5673/v"}},
	} {
		got, err := rabbitmq.ParseURL(tc.raw)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseURL(%q)\n got %+v\nwant %+v", tc.raw, got, tc.want)
		}
	}
}

// TestConfigString: String is the URL ParseURL reads, defaults left out and
// the password masked.
func TestConfigString(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"amqp://":             "amqp://guest:xxxxx@localhost:5672/",
		"amqp://u:p@h/%2F":    "amqp://u:xxxxx@h:5672/",
		"amqps://u:p@h/a%2Fb": "amqps://u:xxxxx@h:5671/a%2Fb",
		"amqp://u:p@[::1]:1/v?heartbeat=10s&exchange=outbox.events": "amqp://u:xxxxx@[::1]:1/v",
		"amqp://u:p@h/v?queue=q&unroutable=drop&max_message_size=9": "amqp://u:xxxxx@h:5672/v?max_message_size=9&queue=q&unroutable=drop",
	} {
		cfg, err := rabbitmq.ParseURL(raw)
		if err != nil {
			t.Fatalf("ParseURL(%q): %v", raw, err)
		}
		if got := cfg.String(); got != want {
			t.Errorf("ParseURL(%q).String() = %q, want %q", raw, got, want)
		}
	}
	if got := (rabbitmq.Config{}).String(); got != "amqp://guest:xxxxx@localhost:5672/" {
		t.Errorf("zero Config: %q", got)
	}
}

func TestParseURLRefused(t *testing.T) {
	t.Parallel()
	for raw, wantInErr := range map[string]string{
		"amqp://h?exchnage=x":                        `unknown setting "exchnage"`,
		"amqp://h?password=x":                        `unknown setting "password"`,
		"amqp://h?exchange=a&exchange=b":             "exchange given 2 times",
		"amqp://h?queue=":                            "queue: empty value",
		"amqp://h?unroutable=maybe":                  "unroutable",
		"amqp://h?confirm_timeout=10":                "confirm_timeout",
		"amqp://h?connect_timeout=-1s":               "connect_timeout",
		"amqp://h?heartbeat=500ms":                   "heartbeat",
		"amqp://h?heartbeat=20h":                     "heartbeat",
		"amqp://h?max_message_size=0":                "max_message_size",
		"amqp://h?max_message_size=1MiB":             "max_message_size",
		"amqp://h?exchange=amq.topic":                "reserved",
		"amqp://h?queue=" + strings.Repeat("q", 256): "longer than 255",
		"amqp://h?cacertfile=/ca.pem":                "amqps",
		"amqps://h?certfile=/c.pem":                  "certfile and keyfile",
		"amqp://h?a;b":                               "query",
		"http://h/":                                  "scheme",
		"h:5672":                                     "scheme",
		"amqp:h":                                     "want amqp://host",
		"amqp://h:99999/":                            "port",
		"amqp://h:0/":                                "port",
		"amqp://h:x/":                                "malformed",
		"amqp://h/a/b":                               "%2F",
		"amqp://h/v#frag":                            "#",
		"amqp://h/ v":                                "whitespace",
		"":                                           "scheme",
	} {
		_, err := rabbitmq.ParseURL(raw)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", raw)
			continue
		}
		if !errors.Is(err, rabbitmq.ErrInvalidConfig) || !strings.Contains(err.Error(), wantInErr) {
			t.Errorf("ParseURL(%q): %v; want ErrInvalidConfig mentioning %q", raw, err, wantInErr)
		}
	}
}

// TestSecretNotLeaked: no error, String or log line shows the password,
// however the URL is broken.
func TestSecretNotLeaked(t *testing.T) {
	t.Parallel()
	const secret = "Sup3rS3cret"
	for _, raw := range []string{
		"amqp://herald:" + secret + "@h:bad/",
		"amqp://herald:" + secret + "%zz@h/",
		"amqp://herald:" + secret + "#x@h/",
		"amqp://herald:" + secret + "@h/a/b",
		"amqp://herald:" + secret + "@h/?unknown=1",
		"amqp://herald:" + secret + "@h/?heartbeat=1ms",
		"amqp://herald:" + secret + "/x@h/",
		"amqp://herald:" + secret + "?@h/",
		"amqp://herald:" + secret + " @h/",
		"amqp://herald:" + secret + "@h:99999/",
		"amqp:herald:" + secret + "@h/",
		"amqp://herald:" + secret + "@h/?exchange=amq.x",
	} {
		_, err := rabbitmq.ParseURL(raw)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", raw)
			continue
		}
		if strings.Contains(err.Error(), secret[2:8]) {
			t.Errorf("ParseURL(%q): error shows the password: %v", raw, err)
		}
	}

	cfg, err := rabbitmq.ParseURL("amqp://herald:" + secret + "@h/v?exchange=e")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "broker", cfg)
	for what, s := range map[string]string{"String": cfg.String(), "log line": logged.String()} {
		if strings.Contains(s, secret) || !strings.Contains(s, "herald:xxxxx@h") {
			t.Errorf("%s = %q: want the password masked", what, s)
		}
	}
}

// FuzzParseURL: ParseURL never panics; what it accepts renders as a URL
// that parses back to the same settings; the password shows in no error
// nor in String.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{
		"amqp://",
		"amqp://guest:guest@127.0.0.1:5672/",
		"amqps://u:p%40ss@h:5671/v%2Fx?exchange=orders.events&queue=q&unroutable=drop",
		"amqp://h/?confirm_timeout=5s&connect_timeout=1s&heartbeat=3s&connection_name=n&max_message_size=10",
		"amqps://h?cacertfile=a&certfile=b&keyfile=c",
		"amqp://u:pw@[::1]:1/%2F",
		"amqp://u:p#w@h/",
		"amqp://u:p%zz@h/",
		"amqp://h?x=1&x=2",
		"amqp:opaque",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := rabbitmq.ParseURL(raw)
		password := fuzzPassword(raw)
		if err != nil {
			if !errors.Is(err, rabbitmq.ErrInvalidConfig) {
				t.Fatalf("ParseURL(%q): %v does not wrap ErrInvalidConfig", raw, err)
			}
			if password != "" && strings.Contains(err.Error(), password) {
				t.Fatalf("ParseURL(%q): error shows the password %q: %v", raw, password, err)
			}
			return
		}
		s := cfg.String()
		if password != "" && strings.Contains(s, password) {
			t.Fatalf("ParseURL(%q).String() = %q shows the password %q", raw, s, password)
		}
		again, err := rabbitmq.ParseURL(s)
		if err != nil {
			t.Fatalf("ParseURL(%q).String() = %q does not parse: %v", raw, s, err)
		}
		again.URL, cfg.URL = "", ""
		if !reflect.DeepEqual(withDefaults(again), withDefaults(cfg)) {
			t.Fatalf("ParseURL(%q) = %+v, but its String %q parses as %+v", raw, cfg, s, again)
		}
	})
}

// fuzzPassword is the password of a fuzzed URL, when it is long enough,
// and found nowhere else in the URL, to be told from the rest of an error
// message.
func fuzzPassword(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, password, ok := strings.Cut(rest[:at], ":")
	if !ok || len(password) < 8 || strings.ContainsAny(password, `"\%`) || strings.Count(raw, password) > 1 {
		return ""
	}
	return password
}

// withDefaults fills the settings String leaves out when they have their
// default values.
func withDefaults(c rabbitmq.Config) rabbitmq.Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Exchange, rabbitmq.DefaultExchange)
	def(&c.ConnectionName, rabbitmq.DefaultConnectionName)
	defDur(&c.ConfirmTimeout, rabbitmq.DefaultConfirmTimeout)
	defDur(&c.ConnectTimeout, rabbitmq.DefaultConnectTimeout)
	defDur(&c.Heartbeat, rabbitmq.DefaultHeartbeat)
	return c
}
