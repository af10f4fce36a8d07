package outbox

import (
	"context"
	"errors"
	"testing"
)

// Caller-numbered events of one aggregate must be consecutive within a call
// and may not be mixed with outbox-numbered ones; both are refused before
// anything reaches the driver (here there is none).
func TestEnqueueTxChecksCallerSequences(t *testing.T) {
	t.Parallel()
	c := NewClient[struct{}](nil)
	ev := func(agg string, seq int64) Event {
		return Event{AggregateType: "a", AggregateID: agg, Type: "t", Payload: []byte(`{}`), Sequence: seq}
	}
	for name, events := range map[string][]Event{
		"gap":          {ev("x", 1), ev("x", 3)},
		"backwards":    {ev("x", 2), ev("x", 1)},
		"repeat":       {ev("x", 4), ev("x", 4)},
		"mixed":        {ev("x", 1), ev("x", 0)},
		"mixed, other": {ev("x", 0), ev("x", 5)},
		"negative":     {ev("x", -1)},
	} {
		if _, err := c.EnqueueTx(context.Background(), struct{}{}, events...); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: EnqueueTx = %v, want ErrInvalidEvent", name, err)
		}
	}
}
