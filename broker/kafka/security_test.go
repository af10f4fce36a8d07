package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/kafka"
	"github.com/heraldhq/herald/outbox/publishertest"
)

// selfSigned makes a certificate for 127.0.0.1 that is its own CA: the
// brokers serve it, the client trusts it from the PEM file at path.
func selfSigned(t testing.TB) (path string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herald test broker"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLS: brokers that speak TLS only, with a certificate the client
// trusts from tls_ca; without it the certificate is refused, unless
// tls_insecure_skip_verify.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca, cert := selfSigned(t)
	c := startCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	hosts := strings.Join(c.addrs, ",")

	cfg, err := kafka.ParseURL("kafka://" + hosts + "?tls_ca=" + ca + "&topic=secure")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = testLogger()
	p := connect(t, cfg)
	msgs := publishertest.Batch(t, "tls", 3, 1)
	publishOK(t, p, msgs)
	ch := subscribe(t, cfg, broker.SubscribeOptions{FromStart: true})
	for range msgs {
		publishertest.Next(t, ch)
	}

	untrusted, err := kafka.ParseURL("kafka://" + hosts + "?tls=true&topic=secure&dial_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := kafka.Connect(testCtx(t), untrusted); err == nil {
		_ = p.Close()
		t.Fatal("Connect trusted a certificate no CA signed")
	}
	insecure, err := kafka.ParseURL("kafka://" + hosts + "?tls_insecure_skip_verify=true&topic=secure")
	if err != nil {
		t.Fatal(err)
	}
	publishOK(t, connect(t, insecure), publishertest.Batch(t, "insecure", 3, 1))
}

// TestSASL: each mechanism authenticates with the URL's user and password;
// a wrong password fails Connect without showing either password.
func TestSASL(t *testing.T) {
	t.Parallel()
	c := startCluster(t,
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plainuser", "plain-pw-1"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "scram-pw-256"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "scram-pw-512"),
	)
	hosts := strings.Join(c.addrs, ",")
	for _, tc := range []struct{ mechanism, user, pw string }{
		{"plain", "plainuser", "plain-pw-1"},
		{"scram-sha-256", "scram256", "scram-pw-256"},
		{"scram-sha-512", "scram512", "scram-pw-512"},
	} {
		cfg, err := kafka.ParseURL("kafka://" + tc.user + ":" + tc.pw + "@" + hosts + "?sasl_mechanism=" + tc.mechanism + "&topic=sasl")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Logger = testLogger()
		publishOK(t, connect(t, cfg), publishertest.Batch(t, tc.mechanism, 3, 1))

		// kfake drops the connection on a wrong password where Kafka
		// answers SASL_AUTHENTICATION_FAILED: franz-go retries a dropped
		// connection, so the context has the last word here.
		cfg.SASL.Password = "wrong-" + tc.pw
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p, err := kafka.Connect(ctx, cfg)
		cancel()
		if err == nil {
			_ = p.Close()
			t.Fatalf("%s: Connect with a wrong password succeeded", tc.mechanism)
		}
		if strings.Contains(err.Error(), tc.pw) {
			t.Fatalf("%s: error %q shows the password", tc.mechanism, err)
		}
	}
}
