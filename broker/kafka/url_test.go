package kafka_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/kafka"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	ca := writeCA(t)
	for _, tc := range []struct {
		url  string
		want kafka.Config
	}{
		{"kafka://127.0.0.1:9092", kafka.Config{Brokers: []string{"127.0.0.1:9092"}}},
		{"kafka://kafka-1", kafka.Config{Brokers: []string{"kafka-1:9092"}}},
		{"kafka://[::1]", kafka.Config{Brokers: []string{"[::1]:9092"}}},
		{"kafka://[::1]:9093/", kafka.Config{Brokers: []string{"[::1]:9093"}}},
		{"kafka://a:9092,b:9093,c", kafka.Config{Brokers: []string{"a:9092", "b:9093", "c:9092"}}},
		{"kafka://a:9092,kafka://b:9093?topic=orders.events", kafka.Config{Brokers: []string{"a:9092", "b:9093"}, Topic: "orders.events"}},
		{"kafka://a:9092, b:9093", kafka.Config{Brokers: []string{"a:9092", "b:9093"}}},
		{"kafka://a?topic=t_1-x.y&create_topic=false&partitions=12&replication_factor=3&client_id=orders",
			kafka.Config{Brokers: []string{"a:9092"}, Topic: "t_1-x.y", NoCreateTopic: true, Partitions: 12, ReplicationFactor: 3, ClientID: "orders"}},
		{"kafka://a?create_topic=true&replication_factor=-1",
			kafka.Config{Brokers: []string{"a:9092"}, ReplicationFactor: -1}},
		{"kafka://herald:p%40ss%3Fw%2Cord@a:9092?sasl_mechanism=SCRAM-SHA-512",
			kafka.Config{Brokers: []string{"a:9092"}, SASL: kafka.SASL{Mechanism: "scram-sha-512", User: "herald", Password: "p@ss?w,ord"}}},
		{"kafka://u:p@a,kafka://u:p@b?sasl_mechanism=plain",
			kafka.Config{Brokers: []string{"a:9092", "b:9092"}, SASL: kafka.SASL{Mechanism: "plain", User: "u", Password: "p"}}},
		{"kafka://u:p@a,b?sasl_mechanism=scram-sha-256",
			kafka.Config{Brokers: []string{"a:9092", "b:9092"}, SASL: kafka.SASL{Mechanism: "scram-sha-256", User: "u", Password: "p"}}},
		{"kafka://a?tls=true", kafka.Config{Brokers: []string{"a:9092"}, TLS: true}},
		{"kafka://a?tls_ca=" + ca, kafka.Config{Brokers: []string{"a:9092"}, TLSCAFile: ca}},
		{"kafka://a?tls=1&tls_insecure_skip_verify=true", kafka.Config{Brokers: []string{"a:9092"}, TLS: true, TLSInsecureSkipVerify: true}},
		{"kafka://a?dial_timeout=3s&request_timeout=1m&delivery_timeout=1500ms",
			kafka.Config{Brokers: []string{"a:9092"}, DialTimeout: 3 * time.Second, RequestTimeout: time.Minute, DeliveryTimeout: 1500 * time.Millisecond}},
		{"kafka://a?compression=zstd", kafka.Config{Brokers: []string{"a:9092"}, Compression: "zstd"}},
		{"kafka://a?compression=none", kafka.Config{Brokers: []string{"a:9092"}, Compression: "none"}},
	} {
		got, err := kafka.ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%s): %v", tc.url, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseURL(%s):\n got %#v\nwant %#v", tc.url, got, tc.want)
		}
	}
}

// writeCA writes a self-signed certificate, for tls_ca.
func writeCA(t *testing.T) string {
	t.Helper()
	path, _ := selfSigned(t)
	return path
}

// TestParseURLRefused: every malformed URL or setting is refused with an
// error that names what is wrong.
func TestParseURLRefused(t *testing.T) {
	t.Parallel()
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ url, names string }{
		{"", "want kafka://"},
		{"127.0.0.1:9092", "want kafka://"},
		{"nats://a:4222", `scheme "nats"`},
		{"kafka://", "no host"},
		{"kafka://:9092", "no host"},
		{"kafka://a:0", "port"},
		{"kafka://a:65536", "port"},
		{"kafka://a:x", "malformed"},
		{"kafka://a/path", "path"},
		{"kafka://a#frag", "fragment"},
		{"kafka://a,", "broker 2"},
		{"kafka://a,nats://b", `broker 2: scheme "nats"`},
		{"kafka://a?bogus=1", `unknown setting "bogus"`},
		{"kafka://a?Topic=x", `unknown setting "Topic"`},
		{"kafka://a?topic=x&topic=y", "topic given 2 times"},
		{"kafka://a?topic=", "topic"},
		{"kafka://a?topic=has%20space", "topic"},
		{"kafka://a?topic=..", "topic"},
		{"kafka://a?create_topic=maybe", "create_topic"},
		{"kafka://a?partitions=0", "partitions"},
		{"kafka://a?partitions=x", "partitions"},
		{"kafka://a?replication_factor=0", "replication_factor"},
		{"kafka://a?replication_factor=-2", "replication_factor"},
		{"kafka://a?replication_factor=40000", "replication_factor"},
		{"kafka://a?client_id=", "client_id"},
		{"kafka://a?sasl_mechanism=gssapi", "gssapi"},
		{"kafka://a?sasl_mechanism=plain", "needs a user"},
		{"kafka://u:p@a", "without a mechanism"},
		{"kafka://u:p@a,kafka://v:p@b?sasl_mechanism=plain", "different users"},
		{"kafka://a?tls=yes", "tls"},
		{"kafka://a?tls=false&tls_insecure_skip_verify=true", "contradicts"},
		{"kafka://a?tls_ca=/nonexistent/ca.pem", "tls_ca"},
		{"kafka://a?tls_ca=" + notPEM, "no PEM certificate"},
		{"kafka://a?dial_timeout=10", "dial_timeout"},
		{"kafka://a?request_timeout=-1s", "request_timeout"},
		{"kafka://a?delivery_timeout=0s", "delivery_timeout"},
		{"kafka://a?compression=brotli", "compression"},
		{"kafka://a?%zz", "query"},
	} {
		_, err := kafka.ParseURL(tc.url)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", tc.url)
			continue
		}
		if !errors.Is(err, kafka.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.names) {
			t.Errorf("ParseURL(%q): %v; want ErrInvalidConfig naming %q", tc.url, err, tc.names)
		}
	}
}

// TestSecretNotShown: the password appears in no error and no rendering of
// the Config, however the URL is mangled.
func TestSecretNotShown(t *testing.T) {
	t.Parallel()
	const pw = "Sup3rS3cret"
	for _, raw := range []string{
		"kafka://herald:" + pw + "@a:9092?bogus=1",
		"kafka://herald:" + pw + "@a:x",
		"kafka://herald:" + pw + "@a:9092/path",
		"kafka://herald:" + pw + "@a:9092#frag",
		"kafka://herald:" + pw + "@a:9092?sasl_mechanism=bogus",
		"kafka://herald:" + pw + "@a:9092?tls_ca=/nonexistent",
		"kafka://herald:" + pw + "@a:9092", // no mechanism
		"kafka://herald:Sup3r?S3cret@a:9092",
		"kafka://herald:Sup3r/S3cret@a:9092",
		"kafka://herald:Sup3r#S3cret@a:9092",
		"kafka://herald:Sup3r,S3cret@a:9092",
		"kafka://herald:Sup3r S3cret@a:9092",
		"herald:" + pw + "@a:9092",
	} {
		_, err := kafka.ParseURL(raw)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", raw)
			continue
		}
		for _, part := range []string{pw, "Sup3r", "S3cret"} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("ParseURL(%q): error %q shows the password", raw, err)
			}
		}
	}
	cfg, err := kafka.ParseURL("kafka://herald:" + pw + "@a:9092?sasl_mechanism=plain")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%v", cfg.SASL), fmt.Sprintf("%#v", cfg.SASL)} {
		if strings.Contains(s, pw) {
			t.Errorf("%q shows the password", s)
		}
		if !strings.Contains(s, "herald") {
			t.Errorf("%q does not name the user", s)
		}
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	if kafka.DefaultTopic != "outbox.events" || kafka.DefaultPartitions != 3 || kafka.DefaultReplicationFactor != -1 {
		t.Fatalf("defaults: topic %q, partitions %d, replication factor %d", kafka.DefaultTopic, kafka.DefaultPartitions, kafka.DefaultReplicationFactor)
	}
	s := kafka.Config{}.String()
	for _, want := range []string{"brokers=127.0.0.1:9092", "topic=outbox.events", "create_topic=true", "client_id=herald", "sasl=none", "tls=false"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, want %q in it", s, want)
		}
	}
}
