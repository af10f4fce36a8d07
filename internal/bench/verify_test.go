package bench

import (
	"reflect"
	"testing"
	"time"
)

func TestVerifier(t *testing.T) {
	t.Parallel()
	type obs struct {
		agg string
		seq int64
	}
	for _, tc := range []struct {
		name     string
		expected map[string]int64
		events   []obs
		verdicts []Verdict
		want     VerifyReport // Aggregates, Expected, Received, Lost, Reordered, Duplicates, Unexpected
	}{
		{
			name:     "in order",
			expected: map[string]int64{"a": 3, "b": 2},
			events:   []obs{{"a", 1}, {"b", 1}, {"a", 2}, {"b", 2}, {"a", 3}},
			verdicts: []Verdict{InOrder, InOrder, InOrder, InOrder, InOrder},
			want:     VerifyReport{Aggregates: 2, Expected: 5, Received: 5},
		},
		{
			name:     "a gap is lost",
			expected: map[string]int64{"a": 3},
			events:   []obs{{"a", 1}, {"a", 3}},
			verdicts: []Verdict{InOrder, Reordered},
			want:     VerifyReport{Aggregates: 1, Expected: 3, Received: 2, Lost: 1, Reordered: 1},
		},
		{
			name:     "a missing tail is lost",
			expected: map[string]int64{"a": 3},
			events:   []obs{{"a", 1}, {"a", 2}},
			verdicts: []Verdict{InOrder, InOrder},
			want:     VerifyReport{Aggregates: 1, Expected: 3, Received: 2, Lost: 1},
		},
		{
			name:     "a swap is a reorder, nothing lost",
			expected: map[string]int64{"a": 3},
			events:   []obs{{"a", 1}, {"a", 3}, {"a", 2}},
			verdicts: []Verdict{InOrder, Reordered, Late},
			want:     VerifyReport{Aggregates: 1, Expected: 3, Received: 3, Reordered: 1},
		},
		{
			name:     "a duplicate is counted, not lost",
			expected: map[string]int64{"a": 2},
			events:   []obs{{"a", 1}, {"a", 1}, {"a", 2}, {"a", 2}},
			verdicts: []Verdict{InOrder, Duplicate, InOrder, Duplicate},
			want:     VerifyReport{Aggregates: 1, Expected: 2, Received: 2, Duplicates: 2},
		},
		{
			name:     "a duplicate of an event ahead of a gap",
			expected: map[string]int64{"a": 3},
			events:   []obs{{"a", 2}, {"a", 2}, {"a", 1}, {"a", 3}},
			verdicts: []Verdict{Reordered, Duplicate, Late, InOrder},
			want:     VerifyReport{Aggregates: 1, Expected: 3, Received: 3, Reordered: 1, Duplicates: 1},
		},
		{
			name:     "events beyond the expected are unexpected",
			expected: map[string]int64{"a": 1},
			events:   []obs{{"a", 1}, {"a", 2}, {"x", 1}},
			verdicts: []Verdict{InOrder, InOrder, InOrder},
			want:     VerifyReport{Aggregates: 2, Expected: 1, Received: 3, Unexpected: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := NewVerifier()
			for agg, n := range tc.expected {
				v.Expect(agg, n)
			}
			for i, e := range tc.events {
				if got := v.Observe(e.agg, e.seq); got != tc.verdicts[i] {
					t.Errorf("event %d (%s #%d): verdict %d, want %d", i, e.agg, e.seq, got, tc.verdicts[i])
				}
			}
			got := v.Report()
			got.Examples = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("report %+v, want %+v", got, tc.want)
			}
			if got.OK() != (tc.want.Lost == 0 && tc.want.Reordered == 0 && tc.want.Unexpected == 0) {
				t.Errorf("OK() = %v for %+v", got.OK(), got)
			}
		})
	}
}

func TestVerifierExpectLater(t *testing.T) {
	t.Parallel()
	// In full mode an event can arrive before the response that tells how
	// many events its request wrote.
	v := NewVerifier()
	v.Observe("a", 1)
	v.Observe("a", 2)
	if v.Pending() != 0 {
		t.Fatalf("pending %d before any expectation", v.Pending())
	}
	v.Expect("a", 1)
	v.Expect("a", 2)
	if v.Pending() != 1 {
		t.Fatalf("pending %d, want 1", v.Pending())
	}
	v.SetExpected("a", 2)
	if r := v.Report(); !r.OK() || r.Expected != 2 || v.Distinct("a") != 2 {
		t.Fatalf("report %+v", r)
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	var s Samples
	for i := 100; i >= 1; i-- {
		s.Add(time.Duration(i) * time.Millisecond)
	}
	sum := s.Summary()
	if sum.N != 100 || sum.P50 != 50*time.Millisecond || sum.P99 != 99*time.Millisecond || sum.Max != 100*time.Millisecond {
		t.Fatalf("summary %+v", sum)
	}
	if (&Samples{}).Summary().N != 0 {
		t.Fatal("empty samples have a summary")
	}
}

func TestBacklogRows(t *testing.T) {
	t.Parallel()
	b := newBacklog(25, 10)
	v := NewVerifier()
	b.expect(v)
	seen := map[string]int64{}
	for i := range b.Events {
		agg, _, seq := b.row(i)
		if seq != seen[agg]+1 {
			t.Fatalf("event %d: %s #%d after #%d", i, agg, seq, seen[agg])
		}
		seen[agg] = seq
		v.Observe(agg, seq)
	}
	if r := v.Report(); !r.OK() || r.Expected != 25 || r.Received != 25 || r.Aggregates != 10 {
		t.Fatalf("report %+v", r)
	}
}
