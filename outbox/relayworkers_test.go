package outbox_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/outbox"
)

// okPublisher acknowledges every message.
type okPublisher struct{}

func (okPublisher) Publish(_ context.Context, msgs []outbox.Message) []error {
	return make([]error, len(msgs))
}
func (okPublisher) Close() error { return nil }

// Workers reports each worker's latest claim, and the latest one that took
// events: after an event is published, some worker has claimed it, and
// every worker's claims are numbered from 0 to Workers-1.
func TestRelayWorkersReportTheirLastClaim(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	relay := relayOn(t, store, okPublisher{})
	if _, err := outbox.NewClient(store).Enqueue(context.Background(),
		outbox.Event{AggregateType: "order", AggregateID: "w-1", Type: "t", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event published", func() bool { return relay.Counters().Published == 1 })
	ws := relay.Workers()
	if len(ws) == 0 || len(ws) > outbox.DefaultWorkers {
		t.Fatalf("workers %+v: want between 1 and %d", ws, outbox.DefaultWorkers)
	}
	took := 0
	for i, w := range ws {
		if i > 0 && w.Worker <= ws[i-1].Worker {
			t.Errorf("workers out of order: %+v", ws)
		}
		if w.Claims == 0 || w.LastClaim.IsZero() || w.LastError != "" {
			t.Errorf("worker %+v: want a successful claim recorded", w)
		}
		if !w.LastEvents.IsZero() {
			took += w.LastEventsClaimed
		}
	}
	if took != 1 {
		t.Errorf("workers %+v: want one worker to have claimed the one event", ws)
	}
}
