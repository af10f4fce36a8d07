package kafka

import (
	"encoding/hex"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/outbox"
)

var contentType = []byte(ContentType)

// traceHeaders are the event headers copied to the record when set.
var traceHeaders = [...]string{"traceparent", "tracestate"}

// newRecords builds the records of msgs. The key is the aggregate id, so
// that one aggregate's events share a partition and keep their order; the
// value is the CloudEvents document exactly as the relay encoded it.
//
// Publish builds a batch of records for every call, so they are built in
// three allocations for the lot (records, headers, one arena for every
// header value and key) and stamped with one clock reading.
func newRecords(msgs []outbox.Message, topic string) []kgo.Record {
	const perRecord = 3 + len(traceHeaders) // content-type, ce_id, ce_type, trace
	size := 0
	for i := range msgs {
		m := &msgs[i]
		size += 36 + len(m.AggregateID) + len(m.Type)
		for _, k := range traceHeaders {
			size += len(m.Headers[k])
		}
	}
	arena := make([]byte, 0, size)
	// take appends s to the arena and returns its copy there.
	take := func(s string) []byte {
		start := len(arena)
		arena = append(arena, s...)
		return arena[start:len(arena):len(arena)]
	}

	now := time.Now()
	recs := make([]kgo.Record, len(msgs))
	headers := make([]kgo.RecordHeader, 0, perRecord*len(msgs))
	for i := range msgs {
		m := &msgs[i]
		start := len(headers)
		idStart := len(arena)
		arena = appendUUID(arena, m.ID)
		headers = append(headers,
			kgo.RecordHeader{Key: HeaderContentType, Value: contentType},
			kgo.RecordHeader{Key: HeaderEventID, Value: arena[idStart:len(arena):len(arena)]},
			kgo.RecordHeader{Key: HeaderEventType, Value: take(m.Type)},
		)
		for _, k := range traceHeaders {
			if v := m.Headers[k]; v != "" {
				headers = append(headers, kgo.RecordHeader{Key: k, Value: take(v)})
			}
		}
		recs[i] = kgo.Record{
			Topic:     topic,
			Key:       take(m.AggregateID),
			Value:     m.Body,
			Headers:   headers[start:len(headers):len(headers)],
			Timestamp: now,
		}
	}
	return recs
}

// appendUUID appends id in its canonical text form, as id.String() would.
func appendUUID(dst []byte, id uuid.UUID) []byte {
	var buf [36]byte
	hex.Encode(buf[0:8], id[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], id[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], id[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], id[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], id[10:])
	return append(dst, buf[:]...)
}
