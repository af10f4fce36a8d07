package outbox

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestDeadLetterFilterValidate(t *testing.T) {
	t.Parallel()
	for _, f := range []DeadLetterFilter{
		{},
		{State: DeadLetterAll},
		{State: DeadLetterOpen, AggregateType: "order", AggregateID: "o-1", EventType: "order.created", AfterID: 7, Limit: 3},
		{State: DeadLetterReplayed},
		{State: DeadLetterDiscarded},
		{AggregateID: strings.Repeat("x", MaxNameLen)},
		{AggregateID: "clé ünïcode ✓"},
		{AfterID: math.MaxInt64, Limit: math.MaxInt},
	} {
		if err := f.Validate(); err != nil {
			t.Errorf("%+v refused: %v", f, err)
		}
	}

	for _, tc := range []struct {
		f       DeadLetterFilter
		field   string
		message string
	}{
		{DeadLetterFilter{AggregateID: "a\x00b"}, "AggregateID", "must not contain control characters"},
		{DeadLetterFilter{AggregateType: "\x00"}, "AggregateType", "must not contain control characters"},
		{DeadLetterFilter{EventType: "a\nb"}, "EventType", "must not contain control characters"},
		{DeadLetterFilter{EventType: "a\u009bb"}, "EventType", "must not contain control characters"},
		{DeadLetterFilter{AggregateID: "\xff"}, "AggregateID", "must be valid UTF-8"},
		{DeadLetterFilter{AggregateID: "\xff\x00"}, "AggregateID", "must be valid UTF-8"},
		{DeadLetterFilter{AggregateID: strings.Repeat("x", MaxNameLen+1)}, "AggregateID", "must be at most 255 bytes"},
		{DeadLetterFilter{AggregateID: strings.Repeat("é", 128)}, "AggregateID", "must be at most 255 bytes"},
		{DeadLetterFilter{State: "closed"}, "State", "must be one of open, replayed, discarded or all"},
		{DeadLetterFilter{State: " open"}, "State", "must be one of open, replayed, discarded or all"},
		{DeadLetterFilter{AfterID: -1}, "AfterID", "must not be negative"},
		{DeadLetterFilter{AfterID: math.MinInt64}, "AfterID", "must not be negative"},
		{DeadLetterFilter{Limit: -1}, "Limit", "must not be negative"},
	} {
		err := tc.f.Validate()
		var fe *FilterError
		if !errors.Is(err, ErrInvalidFilter) || !errors.As(err, &fe) {
			t.Errorf("%+v: Validate() = %v, want a *FilterError wrapping ErrInvalidFilter", tc.f, err)
			continue
		}
		if len(fe.Fields) != 1 || fe.Fields[0] != (FilterFieldError{tc.field, tc.message}) {
			t.Errorf("%+v: fields %+v, want %s %s", tc.f, fe.Fields, tc.field, tc.message)
		}
	}

	err := DeadLetterFilter{State: "x", AggregateID: "\x00", AfterID: -1, Limit: -1}.Validate()
	want := "outbox: invalid dead-letter filter: State must be one of open, replayed, discarded or all; " +
		"AggregateID must not contain control characters; AfterID must not be negative; Limit must not be negative"
	if err == nil || err.Error() != want {
		t.Errorf("four bad fields: %v\nwant %s", err, want)
	}
}
