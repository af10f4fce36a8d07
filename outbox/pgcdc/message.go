package pgcdc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/outbox"
	"github.com/heraldhq/herald/outbox/pgstore"
)

// messageFields are the fields of an event message's content, in order
// (pgstore writes them; docs/DESIGN.md describes the format).
var messageFields = [...]string{"version", "id", "aggregate_type", "aggregate_id", "event_type",
	"sequence", "created_at", "idempotency_key", "headers", "payload"}

// decodeMessage turns the content of a message written with
// pgstore.Config.WALMessages into a record: netstrings
// ("<byte length>:<bytes>,") of the fields above. It refuses content of
// another shape or version, or without a field an event needs, saying what
// is wrong. The record's payload is a copy: content is the stream's buffer.
func decodeMessage(content []byte) (outbox.Record, error) {
	var f [len(messageFields)][]byte
	rest := content
	for i := range f {
		var err error
		if f[i], rest, err = netstring(rest); err != nil {
			return outbox.Record{}, fmt.Errorf("event message: field %s: %w", messageFields[i], err)
		}
		// The version first: another version may have other fields.
		if i == 0 && string(f[0]) != pgstore.MessageVersion {
			return outbox.Record{}, fmt.Errorf("event message: format version %q, this relay reads %q: upgrade the relay", f[0], pgstore.MessageVersion)
		}
	}
	if len(rest) > 0 {
		return outbox.Record{}, fmt.Errorf("event message: %d bytes after the last field", len(rest))
	}
	var (
		rec  outbox.Record
		errs []error
		err  error
	)
	if rec.ID, err = uuid.ParseBytes(f[1]); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
	} else if rec.ID == uuid.Nil {
		errs = append(errs, errors.New("no id"))
	}
	rec.AggregateType, rec.AggregateID, rec.Type = string(f[2]), string(f[3]), string(f[4])
	for i, v := range []string{rec.AggregateType, rec.AggregateID, rec.Type} {
		if v == "" {
			errs = append(errs, fmt.Errorf("no %s", messageFields[2+i]))
		}
	}
	if rec.Sequence, err = strconv.ParseInt(string(f[5]), 10, 64); err != nil || rec.Sequence <= 0 {
		errs = append(errs, fmt.Errorf("sequence %q is not a positive integer", f[5]))
	}
	us, err := strconv.ParseInt(string(f[6]), 10, 64)
	if err != nil {
		errs = append(errs, fmt.Errorf("created_at %q is not microseconds since the epoch", f[6]))
	}
	rec.CreatedAt = time.UnixMicro(us).UTC()
	rec.IdempotencyKey = string(f[7])
	if h := f[8]; !bytes.Equal(h, []byte("{}")) {
		if err := json.Unmarshal(h, &rec.Headers); err != nil {
			errs = append(errs, fmt.Errorf("headers: %w", err))
		}
	}
	if len(f[9]) == 0 {
		errs = append(errs, errors.New("no payload"))
	}
	rec.Payload = bytes.Clone(f[9])
	if len(errs) > 0 {
		return outbox.Record{}, fmt.Errorf("event message: %w", errors.Join(errs...))
	}
	return rec, nil
}

// netstring splits the netstring at the start of b from the rest.
func netstring(b []byte) (value, rest []byte, err error) {
	colon := bytes.IndexByte(b, ':')
	if colon < 1 || colon > 10 {
		return nil, nil, errors.New("no length")
	}
	n, err := strconv.Atoi(string(b[:colon]))
	if err != nil || n < 0 || string(b[:colon]) != strconv.Itoa(n) {
		return nil, nil, fmt.Errorf("bad length %q", b[:colon])
	}
	b = b[colon+1:]
	if n >= len(b) || b[n] != ',' {
		return nil, nil, fmt.Errorf("%d bytes do not end in a comma", n)
	}
	return b[:n], b[n+1:], nil
}
