package rabbitmq

import (
	"errors"
	"fmt"
	neturl "net/url"
	"regexp"
	"strconv"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldhq/herald/outbox"
)

// Errors of this package, compared with errors.Is. Those a publish reports
// are retryable unless the result is also marked outbox.Permanent.
var (
	// ErrInvalidConfig wraps every reason ParseURL, Connect or Subscribe
	// refuse a configuration; nothing was dialled.
	ErrInvalidConfig = errors.New("rabbitmq: invalid configuration")
	// ErrClosed is returned for messages published after Close.
	ErrClosed = errors.New("rabbitmq: publisher closed")
	// ErrNotConnected fails a publish at once while the connection is down
	// and the publisher reconnects.
	ErrNotConnected = fmt.Errorf("rabbitmq: not connected to the broker (%w)", outbox.ErrBrokerUnavailable)
	// ErrBlocked fails a publish at once while the broker blocks publishing
	// connections (a memory or disk alarm).
	ErrBlocked = fmt.Errorf("rabbitmq: the broker blocks publishing (resource alarm) (%w)", outbox.ErrBrokerUnavailable)
	// ErrUnroutable: no queue is bound for the message's routing key and the
	// broker returned it (Config.Unroutable says whether it is Permanent).
	ErrUnroutable = errors.New("rabbitmq: unroutable: no queue is bound for the routing key")
	// ErrNacked: the broker refused the message with a basic.nack (a queue
	// full with overflow reject-publish, an internal error).
	ErrNacked = errors.New("rabbitmq: the broker nacked the message")
	// ErrChannelClosed: the channel or connection closed before the broker
	// confirmed the message; it may or may not have been routed.
	ErrChannelClosed = errors.New("rabbitmq: channel closed before the broker confirmed")
	// ErrConfirmTimeout: no confirm within Config.ConfirmTimeout.
	ErrConfirmTimeout = errors.New("rabbitmq: no publisher confirm within the confirm timeout")
	// ErrTooLarge: the body is larger than the broker's max_message_size
	// (or Config.MaxMessageSize). Always Permanent.
	ErrTooLarge = errors.New("rabbitmq: message larger than the broker accepts")
	// ErrInvalidRoutingKey: the event type cannot be a routing key (empty,
	// or over AMQP's 255 bytes). Always Permanent.
	ErrInvalidRoutingKey = errors.New("rabbitmq: event type is no valid routing key")
	// ErrFromStartNeedsQueue: Subscribe with FromStart needs Config.Queue,
	// since RabbitMQ keeps messages only in queues.
	ErrFromStartNeedsQueue = errors.New("rabbitmq: reading from the start needs a queue (set queue= in the broker URL)")

	// errConnectionClosed: the connection closed without the broker saying
	// why (a write that outlived its batch was broken off).
	errConnectionClosed = errors.New("rabbitmq: connection closed")
)

func ctxError(err error) error {
	return fmt.Errorf("rabbitmq: waiting for publisher confirms: %w", err)
}

// closeError says why a channel closed under a batch. cause is the broker's
// (or the client's) reason, nil when the connection was closed on purpose.
func closeError(cause *amqp.Error) error {
	if cause == nil {
		return ErrChannelClosed
	}
	return fmt.Errorf("%w: %w", ErrChannelClosed, cause)
}

// sizeRefusal matches the reason RabbitMQ closes a channel with when a
// message exceeds max_message_size ("PRECONDITION_FAILED - message size
// 135266304 is larger than configured max size 134217728"). The broker
// offers no other signal of which limit it applied.
var sizeRefusal = regexp.MustCompile(`message size (\d+) is larger than (?:configured )?max size (\d+)`)

// refusedSize returns the limit a channel closure reports having applied,
// if the broker closed the channel over a message too large.
func refusedSize(cause *amqp.Error) (limit int, ok bool) {
	if cause == nil || cause.Code != amqp.PreconditionFailed {
		return 0, false
	}
	m := sizeRefusal.FindStringSubmatch(cause.Reason)
	if m == nil {
		return 0, false
	}
	limit, err := strconv.Atoi(m[2])
	return limit, err == nil && limit > 0
}

// maskedError hides a password in the text of the error it wraps: the AMQP
// client and the network may quote what they were given. errors.Is and
// errors.As see the original.
type maskedError struct {
	err     error
	secrets []string
}

func (e maskedError) Error() string {
	s := e.err.Error()
	for _, secret := range e.secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
	}
	return s
}

func (e maskedError) Unwrap() error { return e.err }

// mask wraps err so that its text never shows password, in any of the
// encodings a URL could hold it in.
func mask(err error, password string) error {
	if err == nil || password == "" {
		return err
	}
	secrets := []string{password}
	for _, enc := range []string{
		neturl.QueryEscape(password),
		neturl.PathEscape(password),
		strings.TrimPrefix(neturl.UserPassword("", password).String(), ":"),
	} {
		if enc != password {
			secrets = append(secrets, enc)
		}
	}
	return maskedError{err: err, secrets: secrets}
}
