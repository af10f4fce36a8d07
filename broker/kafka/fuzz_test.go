package kafka_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/heraldhq/herald/broker/kafka"
)

// FuzzParseURL: ParseURL never panics; what it accepts is a valid Config
// that parses the same from its own brokers and settings; what it refuses
// wraps ErrInvalidConfig; and a password is never shown, neither in an
// error (however the characters around it break the URL) nor in String.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []struct{ url, pw string }{
		{"kafka://127.0.0.1:9092", "pw"},
		{"kafka://a:9092,b:9093,kafka://c?topic=orders.events&create_topic=false", "pw"},
		{"kafka://u:p@a?sasl_mechanism=scram-sha-512&tls=true", "p%40ss"},
		{"kafka://a?partitions=6&replication_factor=3&client_id=x&dial_timeout=1s&request_timeout=2s&delivery_timeout=3s&compression=lz4", "x"},
		{"kafka://a?tls_insecure_skip_verify=true&tls=true", "a?b"},
		{"kafka://[::1]:9092/?topic=t", "a/b"},
		{"kafka://a?bogus=1", "a#b"},
		{"nats://a", "a,b"},
		{"kafka://a?%zz", "a@b"},
		{"kafka://u:p@a,kafka://v:q@b", ""},
	} {
		f.Add(seed.url, seed.pw)
	}
	f.Fuzz(func(t *testing.T, raw, pw string) {
		cfg, err := kafka.ParseURL(raw)
		if err != nil {
			if !errors.Is(err, kafka.ErrInvalidConfig) {
				t.Fatalf("ParseURL(%q): %v, not ErrInvalidConfig", raw, err)
			}
		} else {
			if len(cfg.Brokers) == 0 {
				t.Fatalf("ParseURL(%q) accepted no broker", raw)
			}
			other := cfg
			other.SASL.Password = "something else"
			if cfg.String() != other.String() {
				t.Fatalf("String() depends on the password: %q", cfg.String())
			}
		}

		// The same password, marked so that no error text can contain
		// it by chance, inside a URL that is otherwise fine.
		secret := "Q7" + pw + "7Q"
		withPw := "kafka://herald:" + secret + "@127.0.0.1:9092,127.0.0.1:9093?sasl_mechanism=plain&bogus=1"
		_, err = kafka.ParseURL(withPw)
		if err == nil {
			return // a password that swallowed the unknown setting
		}
		msg := err.Error()
		// Nor its head or tail, where a character that should have
		// been encoded splits it.
		head, tail := secret, secret
		if i := strings.IndexAny(secret, ":/?#@,[] %"); i >= 0 {
			head = secret[:i]
			tail = secret[strings.LastIndexAny(secret, ":/?#@,[] %")+1:]
		}
		for _, part := range []string{secret, head, tail} {
			if len(part) >= 2 && strings.Contains(msg, part) {
				t.Fatalf("ParseURL(%q): error %q shows (part of) the password %q", withPw, msg, part)
			}
		}
	})
}
