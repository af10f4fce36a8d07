package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// clientOptions are the options every client of cfg (producer, probe,
// consumer) shares: brokers, identity, security, timeouts and logging.
func clientOptions(cfg Config) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.DialTimeout(cfg.DialTimeout),
		// After a broker is lost, learn its partitions' new leaders within
		// a second rather than franz-go's default five.
		kgo.MetadataMinAge(time.Second),
		kgo.WithLogger(slogAdapter{cfg.Logger}),
	}
	if cfg.tlsEnabled() {
		tc, err := cfg.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc)) // ServerName from each broker's host
	}
	switch s := cfg.SASL; s.Mechanism {
	case MechanismPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()))
	case MechanismScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()))
	case MechanismScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()))
	}
	return opts, nil
}

// producerOptions are the options of the publisher's clients on top of
// clientOptions. The producer is idempotent (franz-go's default), so that
// its own retries never write a record twice nor out of order, and waits
// for every in-sync replica.
//
// A manual client sends nothing until it is flushed (see produce): Publish
// hands it a whole call's records first, so that a failure can never come
// back before the rest of a run is buffered behind it.
func producerOptions(cfg Config, maxBatchBytes func(string) int32, manual bool) ([]kgo.Opt, error) {
	opts, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}
	codec, err := compressionCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	if manual {
		opts = append(opts,
			kgo.ManualFlushing(),
			// A manual client refuses a record over this many buffered
			// instead of waiting for room: room enough for any call.
			kgo.MaxBufferedRecords(maxBufferedRecords),
		)
	}
	return append(opts,
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		// Publish hands over a whole batch at once and then waits: there
		// is nothing to linger for.
		kgo.ProducerLinger(0),
		kgo.ProduceRequestTimeout(cfg.RequestTimeout),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		// The topic's own max.message.bytes, so that the client never
		// builds a batch the broker refuses whole, and refuses a record
		// over it alone, before sending it.
		kgo.ProducerBatchMaxBytesFn(maxBatchBytes),
	), nil
}

// maxBufferedRecords bounds the records a manual client holds: one Publish
// call's. A call with more fails the excess retryably (they are never
// produced, nor any later event of their aggregates).
const maxBufferedRecords = 1 << 20

func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// tlsConfig builds the TLS configuration, reading TLSCAFile.
func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: c.TLSInsecureSkipVerify, //nolint:gosec // asked for by name, for tests
	}
	if c.TLSCAFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(c.TLSCAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: tls_ca: %w", ErrInvalidConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: tls_ca %s: no PEM certificate in it", ErrInvalidConfig, c.TLSCAFile)
	}
	tc.RootCAs = pool
	return tc, nil
}
