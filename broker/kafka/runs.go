package kafka

import (
	"errors"

	"github.com/heraldhq/herald/outbox"
)

// runKey names an aggregate: the relay's runs are of one (type, id).
type runKey struct{ typ, id string }

func keyOf(m *outbox.Message) runKey { return runKey{m.AggregateType, m.AggregateID} }

// breakRuns reports, after the first failure of an aggregate in the call,
// each of its later messages that failed with an error wrapping
// outbox.ErrRunBroken: the client did not send it, or the broker refused
// it, because the earlier one failed (see produce). A later message whose
// wait was given up (done false) keeps its error: it may still be stored,
// after its predecessors. A later message acked after an earlier one
// failed would break the guarantee; that cannot happen (see produce), and
// if it did it would stay reported as published, which it is, and be
// logged.
func (p *Publisher) breakRuns(msgs []outbox.Message, errs []error, done []bool) {
	var first map[runKey]int
	for i := range msgs {
		k := keyOf(&msgs[i])
		f, failed := first[k]
		switch {
		case !failed && errs[i] != nil:
			if first == nil {
				first = map[runKey]int{}
			}
			first[k] = i
		case !failed:
		case errs[i] == nil:
			p.cfg.Logger.Error("kafka: an event was acked after an earlier event of its aggregate failed in the same batch",
				"aggregate_type", k.typ, "aggregate_id", k.id, "event", msgs[i].ID, "failed", msgs[f].ID)
		case done[i] && !errors.Is(errs[i], outbox.ErrRunBroken):
			errs[i] = runBroken(&msgs[f], errs[f])
		}
	}
}
