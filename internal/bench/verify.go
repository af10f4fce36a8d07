package bench

import (
	"sort"
	"sync"
)

// Verifier checks a stream of events against what was written: per
// aggregate, sequences must arrive as 1, 2, 3… with no gap and no event
// twice. It is safe for concurrent use.
//
// An event whose sequence is above the next one its aggregate is owed
// arrived while an earlier one was still missing: it counts as reordered
// (whether the missing one arrives later or never). An event whose sequence
// was seen already is a duplicate. At the end, Report compares the distinct
// sequences received with the count each aggregate was expected to publish:
// the shortfall is lost, anything beyond it unexpected.
type Verifier struct {
	mu   sync.Mutex
	aggs map[string]*aggState

	received, duplicates, reordered, invalid int64
	expected                                 int64
}

type aggState struct {
	next     int64          // lowest sequence not received yet
	ahead    map[int64]bool // received sequences above next
	expected int64          // how many events the aggregate should publish
}

// NewVerifier returns an empty Verifier.
func NewVerifier() *Verifier {
	return &Verifier{aggs: make(map[string]*aggState)}
}

func (v *Verifier) agg(id string) *aggState {
	a := v.aggs[id]
	if a == nil {
		a = &aggState{next: 1}
		v.aggs[id] = a
	}
	return a
}

// Expect adds n events to those aggregate id must publish.
func (v *Verifier) Expect(id string, n int64) {
	if n == 0 {
		return
	}
	v.mu.Lock()
	v.agg(id).expected += n
	v.expected += n
	v.mu.Unlock()
}

// SetExpected sets how many events aggregate id must publish in all.
func (v *Verifier) SetExpected(id string, n int64) {
	v.mu.Lock()
	a := v.agg(id)
	v.expected += n - a.expected
	a.expected = n
	v.mu.Unlock()
}

// Invalid counts an event that could not be read (not a Herald CloudEvent).
func (v *Verifier) Invalid() {
	v.mu.Lock()
	v.invalid++
	v.mu.Unlock()
}

// Verdict is what Observe made of one event.
type Verdict int

// Verdicts of Observe.
const (
	InOrder   Verdict = iota + 1 // the next sequence of its aggregate
	Reordered                    // a lower sequence of its aggregate is still missing
	Late                         // fills a gap below a sequence already received
	Duplicate                    // this sequence was received already
)

// Observe records the arrival of sequence seq of aggregate id.
func (v *Verifier) Observe(id string, seq int64) Verdict {
	v.mu.Lock()
	defer v.mu.Unlock()
	a := v.agg(id)
	switch {
	case seq < a.next || a.ahead[seq]:
		v.duplicates++
		return Duplicate
	case seq == a.next:
		v.received++
		late := len(a.ahead) > 0 // a later one arrived before this one
		a.next++
		for a.ahead[a.next] {
			delete(a.ahead, a.next)
			a.next++
		}
		if late {
			return Late
		}
		return InOrder
	default:
		v.received++
		v.reordered++
		if a.ahead == nil {
			a.ahead = make(map[int64]bool)
		}
		a.ahead[seq] = true
		return Reordered
	}
}

// Pending reports how many more events are expected than have arrived, in
// total (cheap; Report tells which aggregates miss what).
func (v *Verifier) Pending() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return max(v.expected-v.received, 0)
}

// Received reports how many distinct events arrived.
func (v *Verifier) Received() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.received
}

func (a *aggState) distinct() int64 { return a.next - 1 + int64(len(a.ahead)) }

// VerifyReport is the verdict on everything observed.
type VerifyReport struct {
	Aggregates int   `json:"aggregates"` // aggregates expected or seen
	Expected   int64 `json:"expected"`   // events expected
	Received   int64 `json:"received"`   // distinct events received
	Lost       int64 `json:"lost"`       // expected but never received
	Reordered  int64 `json:"reordered"`  // arrived while a lower sequence of their aggregate was missing
	Duplicates int64 `json:"duplicates"` // received more than once
	Unexpected int64 `json:"unexpected"` // received beyond what their aggregate was expected to publish
	Invalid    int64 `json:"invalid"`    // unreadable messages
	// Examples names a few aggregates with lost or unexpected events.
	Examples []string `json:"examples,omitempty"`
}

// OK reports whether nothing was lost, reordered, unexpected or invalid.
// Duplicates are allowed: an event in flight during a crash is published again, with its id.
func (r VerifyReport) OK() bool {
	return r.Lost == 0 && r.Reordered == 0 && r.Unexpected == 0 && r.Invalid == 0
}

// Report returns the verdict so far.
func (v *Verifier) Report() VerifyReport {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := VerifyReport{
		Aggregates: len(v.aggs),
		Received:   v.received,
		Reordered:  v.reordered,
		Duplicates: v.duplicates,
		Invalid:    v.invalid,
	}
	for id, a := range v.aggs {
		r.Expected += a.expected
		got := a.distinct()
		switch {
		case got < a.expected:
			r.Lost += a.expected - got
			r.Examples = append(r.Examples, id)
		case got > a.expected:
			r.Unexpected += got - a.expected
			r.Examples = append(r.Examples, id)
		}
	}
	sort.Strings(r.Examples)
	if len(r.Examples) > 5 {
		r.Examples = r.Examples[:5]
	}
	return r
}

// Distinct reports how many distinct events of aggregate id arrived.
func (v *Verifier) Distinct(id string) int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if a := v.aggs[id]; a != nil {
		return a.distinct()
	}
	return 0
}
