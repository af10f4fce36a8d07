package httpapi

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/order"
	"github.com/heraldhq/herald/outbox"
)

func TestStats(t *testing.T) {
	t.Parallel()
	t.Run("with relay counters", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *Config) {
			c.RelayCounters = func() outbox.RelayCounters {
				return outbox.RelayCounters{Published: 7, Retried: 2, DeadLettered: 1, Batches: 9}
			}
		})
		var empty StatsResponse
		r := b.do(t, req{method: "GET", path: "/api/v1/outbox/stats"})
		r.decode(t, 200, &empty)
		if want := `{"pending":0,"in_retry":0,"oldest_pending_at":null,"lag_seconds":0,"dlq_size":0,"parked":0,"published":7,"retried":2,"dead_lettered":1}` + "\n"; string(r.Body) != want {
			t.Errorf("empty stats %s\nwant %s", r.Body, want)
		}

		b.createOrder(t, createBody)
		b.createOrder(t, createBody)
		b.deadLetter(t, "agg-1", "thing.failed") // the two order.created events are retried meanwhile
		time.Sleep(20 * time.Millisecond)
		var s StatsResponse
		b.do(t, req{method: "GET", path: "/api/v1/outbox/stats"}).decode(t, 200, &s)
		if s.Pending != 2 || s.InRetry != 2 || s.DLQSize != 1 || *s.Published != 7 || *s.Retried != 2 || *s.DeadLettered != 1 {
			t.Errorf("stats %+v", s)
		}
		if s.OldestPendingAt == nil || s.LagSeconds < 0.02 || s.LagSeconds > 60 {
			t.Errorf("oldest %v lag %v", s.OldestPendingAt, s.LagSeconds)
		}
		if s.Parked != 0 {
			t.Errorf("parked %d with no event behind the dead letter", s.Parked)
		}
		// An event of agg-1 after its dead letter waits behind it.
		b.lastSeq["agg-1"]++
		if _, err := b.client.Enqueue(context.Background(), outbox.Event{AggregateType: "order", AggregateID: "agg-1",
			Type: "thing.later", Sequence: b.lastSeq["agg-1"], Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		b.do(t, req{method: "GET", path: "/api/v1/outbox/stats"}).decode(t, 200, &s)
		if s.Pending != 3 || s.Parked != 1 || s.DLQSize != 1 {
			t.Errorf("stats with one event behind the dead letter: %+v", s)
		}
	})
	t.Run("without relay", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := b.do(t, req{method: "GET", path: "/api/v1/outbox/stats"})
		if want := `{"pending":0,"in_retry":0,"oldest_pending_at":null,"lag_seconds":0,"dlq_size":0,"parked":0}` + "\n"; string(r.Body) != want {
			t.Errorf("stats %s\nwant %s", r.Body, want)
		}
	})
}

func TestListDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/outbox/dlq"
	d1 := b.deadLetter(t, "agg-1", "thing.failed")
	d2 := b.deadLetter(t, "agg-2", "thing.failed")
	d3 := b.deadLetter(t, "agg-1", "other.failed")
	if err := b.driver.DiscardDeadLetter(context.Background(), d2.ID, "bad data"); err != nil {
		t.Fatal(err)
	}
	ids := func(l ListDeadLettersResponse) string {
		var parts []string
		for _, d := range l.DeadLetters {
			parts = append(parts, strconv.FormatInt(d.ID, 10))
		}
		return strings.Join(parts, ",")
	}
	join := func(ds ...outbox.DeadLetter) string {
		var parts []string
		for _, d := range ds {
			parts = append(parts, strconv.FormatInt(d.ID, 10))
		}
		return strings.Join(parts, ",")
	}
	for _, tc := range []struct {
		query, want, next string
	}{
		{"", join(d1, d3), ""}, // open ones by default, as herald dlq list
		{"?state=open", join(d1, d3), ""},
		{"?state=discarded", join(d2), ""},
		{"?state=replayed", "", ""},
		{"?aggregate_id=agg-1", join(d1, d3), ""},
		{"?aggregate_type=order&event_type=thing.failed", join(d1), ""},
		{"?aggregate_type=order&event_type=thing.failed&state=all", join(d1, d2), ""},
		{"?aggregate_type=other", "", ""},
		{"?limit=2&state=all", join(d1, d2), strconv.FormatInt(d2.ID, 10)},
		{"?limit=2&state=all&after=" + strconv.FormatInt(d2.ID, 10), join(d3), ""},
		{"?limit=1", join(d1), strconv.FormatInt(d1.ID, 10)},
		{"?limit=1&state=open&after=" + strconv.FormatInt(d1.ID, 10), join(d3), ""},
		{"?limit=3&state=all", join(d1, d2, d3), ""},
		{"?state=all", join(d1, d2, d3), ""},
		{"?state=", join(d1, d3), ""},
		{"?state=all&aggregate_id=agg-1&limit=1", join(d1), strconv.FormatInt(d1.ID, 10)},
		{"?aggregate_id=" + strings.Repeat("a", 255), "", ""},
		{"?after=9223372036854775807", "", ""},
		{"?after=0&state=all", join(d1, d2, d3), ""},
		{"?after=0", join(d1, d3), ""},
	} {
		var l ListDeadLettersResponse
		b.do(t, req{method: "GET", path: path + tc.query}).decode(t, 200, &l)
		if ids(l) != tc.want || l.NextCursor != tc.next || l.DeadLetters == nil {
			t.Errorf("%s: ids %q next %q, want %q next %q", tc.query, ids(l), l.NextCursor, tc.want, tc.next)
		}
	}

	// The shape of one entry.
	var l ListDeadLettersResponse
	b.do(t, req{method: "GET", path: path + "?state=discarded"}).decode(t, 200, &l)
	d := l.DeadLetters[0]
	if d.ID != d2.ID || d.EventID != d2.EventID || d.AggregateType != "order" || d.AggregateID != "agg-2" ||
		d.EventType != "thing.failed" || d.Sequence != 1 || string(d.Payload) != `{"n":1}` ||
		d.Headers["traceparent"] != "00-abc-def-01" || d.Error != "broker said no" || d.Attempts != 1 ||
		d.State != outbox.DeadLetterDiscarded || d.ReplayedAt != nil || d.DiscardedAt == nil ||
		d.DiscardReason != "bad data" || d.MovedAt.IsZero() || d.CreatedAt.IsZero() || d.FirstFailedAt.IsZero() {
		t.Errorf("dead letter %+v", d)
	}

	for _, tc := range []struct {
		query  string
		fields map[string]string
	}{
		{"?state=closed", map[string]string{"state": "must be one of open, replayed, discarded or all"}},
		{"?state=ALL", map[string]string{"state": "must be one of open, replayed, discarded or all"}},
		{"?state=open%00", map[string]string{"state": "must be one of open, replayed, discarded or all"}},
		{"?limit=0", map[string]string{"limit": "must be an integer between 1 and 500"}},
		{"?limit=501", map[string]string{"limit": "must be an integer between 1 and 500"}},
		{"?after=-1", map[string]string{"after": "must be an integer between 0 and 9223372036854775807"}},
		{"?after=-9223372036854775808", map[string]string{"after": "must be an integer between 0 and 9223372036854775807"}},
		{"?after=9223372036854775808", map[string]string{"after": "must be an integer between 0 and 9223372036854775807"}},
		{"?after=x&state=y", map[string]string{"after": "must be an integer between 0 and 9223372036854775807",
			"state": "must be one of open, replayed, discarded or all"}},
		{"?aggregate_id=" + strings.Repeat("a", 256), map[string]string{"aggregate_id": "must be at most 255 bytes"}},
		{"?aggregate_id=" + strings.Repeat("%C3%A9", 128), map[string]string{"aggregate_id": "must be at most 255 bytes"}},
		// The filters of the adversarial run: NUL, other control characters
		// and bytes that are not UTF-8, in every name.
		{"?aggregate_id=a%00b", map[string]string{"aggregate_id": "must not contain control characters"}},
		{"?aggregate_type=order%00", map[string]string{"aggregate_type": "must not contain control characters"}},
		{"?event_type=%00", map[string]string{"event_type": "must not contain control characters"}},
		{"?aggregate_id=a%0Ab", map[string]string{"aggregate_id": "must not contain control characters"}},
		{"?event_type=a%C2%85", map[string]string{"event_type": "must not contain control characters"}},
		{"?aggregate_type=%FF", map[string]string{"aggregate_type": "must be valid UTF-8"}},
		{"?aggregate_type=%FF&aggregate_id=%00&event_type=x%7F&state=%00", map[string]string{
			"aggregate_type": "must be valid UTF-8", "aggregate_id": "must not contain control characters",
			"event_type": "must not contain control characters", "state": "must be one of open, replayed, discarded or all"}},
		{"?aggregate_id=a&aggregate_id=%00", map[string]string{"aggregate_id": "must be given at most once"}},
	} {
		p := b.do(t, req{method: "GET", path: path + tc.query}).problem(t, 422, order.EINVALID, path)
		if !equalMaps(p.fields(), tc.fields) {
			t.Errorf("%s: errors %v, want %v", tc.query, p.fields(), tc.fields)
		}
	}
	p := b.do(t, req{method: "GET", path: path + "?status=open"}).problem(t, 400, eBadRequest, path)
	if p.Detail != `Unknown query parameter "status"; known: state, aggregate_type, aggregate_id, event_type, after, limit.` {
		t.Errorf("detail %q", p.Detail)
	}
}

func TestGetDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dl := b.deadLetter(t, "agg-1", "thing.failed")
	path := fmt.Sprintf("/api/v1/outbox/dlq/%d", dl.ID)
	var d DeadLetter
	b.do(t, req{method: "GET", path: path}).decode(t, 200, &d)
	if d.ID != dl.ID || d.EventID != dl.EventID || d.State != outbox.DeadLetterOpen || d.Error != "broker said no" ||
		string(d.Payload) != `{"n":1}` || d.DiscardedAt != nil || d.ReplayedAt != nil {
		t.Errorf("dead letter %+v", d)
	}
	unknown := fmt.Sprintf("/api/v1/outbox/dlq/%d", dl.ID+100)
	p := b.do(t, req{method: "GET", path: unknown}).problem(t, 404, order.ENOTFOUND, unknown)
	if p.Detail != "No such dead letter." {
		t.Errorf("detail %q", p.Detail)
	}
}

func TestReplayDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dl := b.deadLetter(t, "agg-1", "thing.failed")
	path := fmt.Sprintf("/api/v1/outbox/dlq/%d/replay", dl.ID)
	before := b.state(t)

	// A body, if any, must be a JSON object with nothing in it.
	b.do(t, req{method: "POST", path: path, body: `{"force":true}`}).problem(t, 400, eBadRequest, path)
	b.do(t, req{method: "POST", path: path, body: `{}`, headers: []string{"Content-Type", "text/plain"}}).
		problem(t, 415, eUnsupportedType, path)
	unknown := fmt.Sprintf("/api/v1/outbox/dlq/%d/replay", dl.ID+1)
	b.do(t, req{method: "POST", path: unknown}).problem(t, 404, order.ENOTFOUND, unknown)
	b.unchanged(t, before)

	var d DeadLetter
	b.do(t, req{method: "POST", path: path}).decode(t, 200, &d)
	if d.ID != dl.ID || d.State != outbox.DeadLetterReplayed || d.ReplayedAt == nil {
		t.Errorf("dead letter %+v", d)
	}
	after := b.state(t)
	if after.Outbox != before.Outbox+1 || after.OpenDeadLetters != before.OpenDeadLetters-1 || after.DeadLetters != before.DeadLetters {
		t.Errorf("state %+v after %+v", after, before)
	}
	// The event is back with its id.
	batch, err := b.driver.Claim(context.Background(), outbox.ClaimParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	recs := batch.Records()
	if err := batch.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != dl.EventID || recs[0].Sequence != dl.Sequence {
		t.Errorf("outbox %+v", recs)
	}

	p := b.do(t, req{method: "POST", path: path, body: `{}`}).problem(t, 409, order.ECONFLICT, path)
	replayed, err := b.driver.GetDeadLetter(context.Background(), dl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "The dead letter was already replayed at " + replayed.ReprocessedAt.UTC().Format(time.RFC3339) + "."; p.Detail != want {
		t.Errorf("detail %q", p.Detail)
	}
	b.unchanged(t, after)
}

func TestDiscardDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d1 := b.deadLetter(t, "agg-1", "thing.failed")
	d2 := b.deadLetter(t, "agg-2", "thing.failed")
	d3 := b.deadLetter(t, "agg-3", "thing.failed")
	p1 := fmt.Sprintf("/api/v1/outbox/dlq/%d", d1.ID)
	before := b.state(t)

	for _, tc := range []struct {
		path    string
		body    any
		status  int
		code    string
		field   string
		message string
	}{
		{p1, nil, 422, order.EINVALID, "reason", `is required: say why the event is dropped (a JSON body {"reason": "…"} or ?reason=)`},
		{p1, map[string]any{}, 422, order.EINVALID, "reason", `is required: say why the event is dropped (a JSON body {"reason": "…"} or ?reason=)`},
		{p1, map[string]any{"reason": "  "}, 422, order.EINVALID, "reason", `is required: say why the event is dropped (a JSON body {"reason": "…"} or ?reason=)`},
		{p1 + "?reason=", nil, 422, order.EINVALID, "reason", `is required: say why the event is dropped (a JSON body {"reason": "…"} or ?reason=)`},
		{p1, map[string]any{"reason": strings.Repeat("r", 501)}, 422, order.EINVALID, "reason", "must be at most 500 characters"},
		{p1 + "?reason=a%0Ab", nil, 422, order.EINVALID, "reason", "must not contain control characters"},
		{p1 + "?reason=x", map[string]any{"reason": "y"}, 400, eBadRequest, "", ""},
		{p1 + "?why=x", nil, 400, eBadRequest, "", ""},
		{p1, map[string]any{"reason": 5}, 400, eBadRequest, "", ""},
		{fmt.Sprintf("/api/v1/outbox/dlq/%d?reason=x", d3.ID+10), nil, 404, order.ENOTFOUND, "", ""},
	} {
		path, _, _ := strings.Cut(tc.path, "?")
		p := b.do(t, req{method: "DELETE", path: tc.path, body: tc.body}).problem(t, tc.status, tc.code, path)
		if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field || p.Errors[0].Message != tc.message) {
			t.Errorf("%s: errors %+v", tc.path, p.Errors)
		}
	}
	b.unchanged(t, before)

	var d DeadLetter
	b.do(t, req{method: "DELETE", path: p1, body: map[string]any{"reason": "payload is garbage"}}).decode(t, 200, &d)
	if d.ID != d1.ID || d.State != outbox.DeadLetterDiscarded || d.DiscardReason != "payload is garbage" || d.DiscardedAt == nil || d.ReplayedAt != nil {
		t.Errorf("dead letter %+v", d)
	}
	b.do(t, req{method: "DELETE", path: fmt.Sprintf("/api/v1/outbox/dlq/%d?reason=dup%%20event", d2.ID)}).decode(t, 200, &d)
	if d.ID != d2.ID || d.DiscardReason != "dup event" {
		t.Errorf("dead letter %+v", d)
	}
	d = DeadLetter{}
	b.do(t, req{method: "DELETE", path: fmt.Sprintf("/api/v1/outbox/dlq/%d", d3.ID), body: map[string]any{"reason": "test"}}).decode(t, 200, &d)
	if d.ID != d3.ID || d.State != outbox.DeadLetterDiscarded || d.DiscardReason != "test" {
		t.Errorf("dead letter %+v", d)
	}
	after := b.state(t)
	// The records stay, resolved; nothing went back to the outbox.
	if after.DeadLetters != 3 || after.OpenDeadLetters != 0 || after.Outbox != before.Outbox {
		t.Errorf("state %+v", after)
	}
	b.do(t, req{method: "DELETE", path: p1 + "?reason=again"}).problem(t, 409, order.ECONFLICT, p1)
	b.do(t, req{method: "POST", path: p1 + "/replay"}).problem(t, 409, order.ECONFLICT, p1+"/replay")
	b.unchanged(t, after)
	if logs := b.logs.String(); !strings.Contains(logs, `"msg":"dead letter discarded"`) || !strings.Contains(logs, `"reason":"payload is garbage"`) {
		t.Errorf("discard not logged:\n%s", logs)
	}
}

func TestReplayDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const path = "/api/v1/outbox/dlq/replay"
	b.deadLetter(t, "agg-1", "thing.failed")
	b.deadLetter(t, "agg-2", "thing.failed")
	b.deadLetter(t, "agg-2", "other.failed")
	b.deadLetter(t, "agg-3", "other.failed")
	b.deadLetter(t, "agg-4", "other.failed")
	before := b.state(t)

	for _, tc := range []struct {
		body   any
		status int
		code   string
		fields map[string]string
	}{
		{map[string]any{}, 422, order.EINVALID, map[string]string{
			"all": "must be true to replay every open dead letter; or give aggregate_type, aggregate_id or event_type"}},
		{map[string]any{"all": false, "limit": 5}, 422, order.EINVALID, map[string]string{
			"all": "must be true to replay every open dead letter; or give aggregate_type, aggregate_id or event_type"}},
		{map[string]any{"aggregate_id": strings.Repeat("a", 256), "limit": -1}, 422, order.EINVALID, map[string]string{
			"aggregate_id": "must be at most 255 bytes", "limit": "must not be negative"}},
		// The bodies of the adversarial run (a 500 on PostgreSQL, 200 on
		// SQLite): a NUL, or another control character, in any name.
		{`{"aggregate_id":"a\u0000b"}`, 422, order.EINVALID, map[string]string{
			"aggregate_id": "must not contain control characters"}},
		{`{"aggregate_type":"\u0000"}`, 422, order.EINVALID, map[string]string{
			"aggregate_type": "must not contain control characters"}},
		{`{"event_type":"order.created\u0000","all":true}`, 422, order.EINVALID, map[string]string{
			"event_type": "must not contain control characters"}},
		{`{"aggregate_id":"agg-1\n"}`, 422, order.EINVALID, map[string]string{
			"aggregate_id": "must not contain control characters"}},
		{`{"aggregate_type":"\u0000","aggregate_id":"\u001b[2J","event_type":"\u0085","limit":-1}`, 422, order.EINVALID, map[string]string{
			"aggregate_type": "must not contain control characters", "aggregate_id": "must not contain control characters",
			"event_type": "must not contain control characters", "limit": "must not be negative"}},
		{`{"aggregate_id":"` + strings.Repeat("é", 128) + `"}`, 422, order.EINVALID, map[string]string{
			"aggregate_id": "must be at most 255 bytes"}},
		{map[string]any{"state": "open", "all": true}, 400, eBadRequest, nil},
		{map[string]any{"all": "yes"}, 400, eBadRequest, nil},
		{nil, 400, eBadRequest, nil},
	} {
		p := b.do(t, req{method: "POST", path: path, body: tc.body}).problem(t, tc.status, tc.code, path)
		if !equalMaps(p.fields(), tc.fields) && tc.fields != nil {
			t.Errorf("%v: errors %v, want %v", tc.body, p.fields(), tc.fields)
		}
	}
	b.unchanged(t, before)

	var rr ReplayResponse
	b.do(t, req{method: "POST", path: path, body: map[string]any{"aggregate_id": "agg-2"}}).decode(t, 200, &rr)
	if rr.Replayed != 2 {
		t.Errorf("replayed %d, want 2", rr.Replayed)
	}
	b.do(t, req{method: "POST", path: path, body: map[string]any{"event_type": "other.failed", "limit": 1}}).decode(t, 200, &rr)
	if rr.Replayed != 1 {
		t.Errorf("replayed %d, want 1", rr.Replayed)
	}
	b.do(t, req{method: "POST", path: path, body: map[string]any{"aggregate_id": "agg-2"}}).decode(t, 200, &rr)
	if rr.Replayed != 0 {
		t.Errorf("replayed %d again, want 0", rr.Replayed)
	}
	b.do(t, req{method: "POST", path: path, body: map[string]any{"all": true}}).decode(t, 200, &rr)
	if rr.Replayed != 2 {
		t.Errorf("replayed %d, want the 2 left", rr.Replayed)
	}
	after := b.state(t)
	if after.OpenDeadLetters != 0 || after.DeadLetters != 5 || after.Outbox != before.Outbox+5 {
		t.Errorf("state %+v", after)
	}
}
