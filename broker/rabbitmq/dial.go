package rabbitmq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// dial opens a connection named name, bounded by ctx and
// cfg.ConnectTimeout; ctx ending during the handshakes aborts them. cfg has
// its defaults applied and is valid.
func dial(ctx context.Context, cfg Config, name string) (*amqp.Connection, error) {
	a, err := parseAddress(cfg.URL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	// abort, armed once the TCP connection is up, breaks off the handshakes
	// when ctx ends; it is disarmed before ctx is cancelled below.
	var disarm func() bool
	ac := amqp.Config{
		SASL:       []amqp.Authentication{&amqp.PlainAuth{Username: a.user, Password: a.password}},
		Vhost:      a.vhost,
		Heartbeat:  cfg.Heartbeat,
		Properties: props,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The deadline covers the TLS and AMQP handshakes; the client
			// clears it once the connection is open.
			deadline, _ := ctx.Deadline()
			_ = c.SetDeadline(deadline)
			disarm = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
			return c, nil
		},
	}
	if a.tls {
		if ac.TLSClientConfig, err = cfg.tlsConfig(a.host); err != nil {
			return nil, err
		}
	}
	conn, err := amqp.DialConfig(a.dialURL(), ac)
	if disarm != nil && !disarm() && err == nil {
		// ctx ended as the handshake finished: the abort has broken the
		// connection already.
		_ = conn.CloseDeadline(time.Now())
		err = ctx.Err()
	}
	if err != nil {
		where := a.redacted()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			return nil, mask(fmt.Errorf("rabbitmq: connect to %s: %w (%w)", where, err, ctx.Err()), a.password)
		}
		return nil, mask(fmt.Errorf("rabbitmq: connect to %s: %w", where, err), a.password)
	}
	return conn, nil
}

// tlsConfig is the TLS configuration of an amqps connection to host.
func (c Config) tlsConfig(host string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.CACertFile != "" {
		pem, err := os.ReadFile(c.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("%w: cacertfile: %w", ErrInvalidConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: cacertfile %s holds no PEM certificate", ErrInvalidConfig, c.CACertFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: certfile/keyfile: %w", ErrInvalidConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// declare creates the exchange (and the queue, if cfg has one) or checks
// that they exist: a user without the configure permission may still
// publish to an exchange someone else declared.
func declare(conn *amqp.Connection, cfg Config) error {
	if err := declareExchange(conn, cfg.Exchange); err != nil {
		return err
	}
	if cfg.Queue == "" {
		return nil
	}
	return declareQueue(conn, cfg.Queue, cfg.Exchange, []string{"#"})
}

func declareExchange(conn *amqp.Connection, exchange string) error {
	err := withChannel(conn, func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
	})
	if isCode(err, amqp.AccessRefused) {
		if withChannel(conn, func(ch *amqp.Channel) error {
			return ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
		}) == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: declare exchange %s (durable, topic): %w", exchange, err)
	}
	return nil
}

// declareQueue makes sure queue exists, durable, and is bound to exchange
// with keys. An existing queue is kept as it is (its type and arguments may
// differ from a plain durable queue's).
func declareQueue(conn *amqp.Connection, queue, exchange string, keys []string) error {
	return withChannel(conn, func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
			if !isCode(err, amqp.NotFound) {
				return fmt.Errorf("rabbitmq: look up queue %s: %w", queue, err)
			}
			// The failed lookup closed the channel.
			if ch, err = conn.Channel(); err != nil {
				return fmt.Errorf("rabbitmq: %w", err)
			}
			defer func() { _ = ch.Close() }() // a failed declaration closes it anyway
			if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
				return fmt.Errorf("rabbitmq: declare queue %s (durable): %w", queue, err)
			}
		}
		for _, key := range keys {
			if err := ch.QueueBind(queue, key, exchange, false, nil); err != nil {
				return fmt.Errorf("rabbitmq: bind queue %s to exchange %s with %q: %w", queue, exchange, key, err)
			}
		}
		return nil
	})
}

// withChannel runs fn on a channel of its own, closed afterwards (a failed
// declaration closes it anyway).
func withChannel(conn *amqp.Connection, fn func(*amqp.Channel) error) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: open channel: %w", err)
	}
	defer func() { _ = ch.Close() }() // a failed declaration closes it anyway
	return fn(ch)
}

// isCode reports whether err is the broker's error with the given reply code.
func isCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}
