package natsjs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/outbox"
)

// SubscribeOptions choose what a subscription reads. The zero value reads
// every event in the stream from its first message on.
type SubscribeOptions struct {
	// DeliverNew reads only messages stored after Subscribe returns.
	DeliverNew bool
	// StartSeq, when non-zero, starts at this stream sequence (ignored with
	// DeliverNew).
	StartSeq uint64
	// Types restricts the subscription to these event types; empty reads
	// all of them.
	Types []string
}

// Delivery is one message read from the stream.
type Delivery struct {
	// Event is the parsed body; zero when Err is set.
	Event outbox.CloudEvent
	// Err says why Body is not a valid Herald CloudEvent (outbox.ParseCloudEvent).
	Err       error
	Body      []byte
	Subject   string
	Header    nats.Header
	StreamSeq uint64
	Stored    time.Time // when JetStream stored the message
}

// Subscribe reads the stream of cfg with an ordered, ephemeral consumer
// (no acks, nothing left on the server beyond its inactivity timeout) and
// calls fn for each message, one at a time and in stream order. The stream
// is created if it does not exist yet; an existing one is left as it is.
// ctx bounds the setup only.
//
// stop ends the subscription and returns once fn has returned for the last
// time; it is idempotent and must not be called from fn. A subscription
// survives reconnects, resuming after the last message it delivered.
func Subscribe(ctx context.Context, nc *nats.Conn, cfg Config, opts SubscribeOptions, fn func(Delivery)) (stop func(), err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	if err := ensureStream(ctx, js, cfg, false); err != nil {
		return nil, err
	}

	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{cfg.SubjectPrefix + ">"}}
	if len(opts.Types) > 0 {
		occ.FilterSubjects = occ.FilterSubjects[:0]
		for _, t := range opts.Types {
			if err := validSubjectSuffix(t); err != nil {
				return nil, err
			}
			occ.FilterSubjects = append(occ.FilterSubjects, cfg.SubjectPrefix+t)
		}
	}
	switch {
	case opts.DeliverNew:
		occ.DeliverPolicy = jetstream.DeliverNewPolicy
	case opts.StartSeq > 0:
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = opts.StartSeq
	default:
		occ.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, cfg.Stream, occ)
	if err != nil {
		return nil, fmt.Errorf("natsjs: consumer on stream %s: %w", cfg.Stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		d := Delivery{Body: m.Data(), Subject: m.Subject(), Header: m.Headers()}
		if md, err := m.Metadata(); err == nil {
			d.StreamSeq, d.Stored = md.Sequence.Stream, md.Timestamp
		}
		d.Event, d.Err = outbox.ParseCloudEvent(d.Body)
		fn(d)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		cfg.Logger.Debug("natsjs: consumer", "stream", cfg.Stream, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("natsjs: consume stream %s: %w", cfg.Stream, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cc.Stop()
			<-cc.Closed()
		})
	}, nil
}
