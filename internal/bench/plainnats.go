package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/broker/natsjs"
	"github.com/heraldhq/herald/outbox"
)

// plainNATS is the plain loop's JetStream publisher, written straight on
// nats.go as a hand-written relay would: PublishMsgAsync with the message
// id and content type set as headers, then every ack awaited. It keeps no
// order across failures and classifies no error.
type plainNATS struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
}

func newPlainNATS(ctx context.Context, url string, cfg natsjs.Config) (*plainNATS, error) {
	// The adapter makes the stream, as for the relay; the plain loop
	// publishes on a connection of its own.
	p, err := natsjs.Connect(ctx, url, cfg)
	if err != nil {
		return nil, err
	}
	cfg = p.Config()
	_ = p.Close()
	nc, err := nats.Connect(url, nats.Name("herald bench plain loop"))
	if err != nil {
		return nil, fmt.Errorf("bench: plain loop: connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natsjs.DefaultMaxPending))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &plainNATS{nc: nc, js: js, prefix: cfg.SubjectPrefix}, nil
}

func (p *plainNATS) Publish(ctx context.Context, msgs []outbox.Message) []error {
	errs := make([]error, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i := range msgs {
		m := &nats.Msg{Subject: p.prefix + msgs[i].Type, Data: msgs[i].Body, Header: nats.Header{
			"Nats-Msg-Id":  []string{msgs[i].ID.String()},
			"Content-Type": []string{natsjs.ContentType},
		}}
		futures[i], errs[i] = p.js.PublishMsgAsync(m)
	}
	timeout := time.NewTimer(natsjs.DefaultAckTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = err
		case <-ctx.Done():
			errs[i] = ctx.Err()
		case <-timeout.C:
			errs[i] = context.DeadlineExceeded
		}
	}
	return errs
}

func (p *plainNATS) Close() error {
	p.nc.Close()
	return nil
}
