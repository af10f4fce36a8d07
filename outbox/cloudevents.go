package outbox

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// CloudEvent is the wire form of an event: a CloudEvents 1.0 structured JSON
// document with Herald's extensions.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	AggregateType   string          `json:"aggregatetype"`
	Sequence        int64           `json:"sequence"`
	TraceParent     string          `json:"traceparent,omitempty"`
	TraceState      string          `json:"tracestate,omitempty"`
}

// NewCloudEvent builds the wire form of r.
func NewCloudEvent(r *Record, source string) CloudEvent {
	if source == "" {
		source = DefaultSource
	}
	return CloudEvent{
		SpecVersion:     "1.0",
		ID:              r.ID.String(),
		Source:          source,
		Type:            r.Type,
		Subject:         r.AggregateID,
		Time:            r.CreatedAt.UTC(),
		DataContentType: "application/json",
		Data:            r.Payload,
		AggregateType:   r.AggregateType,
		Sequence:        r.Sequence,
		TraceParent:     r.Headers["traceparent"],
		TraceState:      r.Headers["tracestate"],
	}
}

// EncodeCloudEvent renders r as CloudEvents JSON: the bytes json.Marshal
// gives for NewCloudEvent(r, source), written without reflection (the relay
// encodes every event it publishes). It fails when the payload is not valid
// JSON.
func EncodeCloudEvent(r *Record, source string) ([]byte, error) {
	return AppendCloudEvent(make([]byte, 0, 512+len(r.Payload)), r, source)
}

// AppendCloudEvent appends EncodeCloudEvent's document to dst.
func AppendCloudEvent(dst []byte, r *Record, source string) ([]byte, error) {
	if source == "" {
		source = DefaultSource
	}
	b := append(dst, `{"specversion":"1.0","id":"`...)
	b = appendUUID(b, r.ID) // hex and dashes: nothing to escape
	b = append(b, `","source":`...)
	b = appendJSONString(b, source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, r.Type)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, r.AggregateID)
	b = append(b, `,"time":"`...)
	b = r.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","datacontenttype":"application/json","data":`...)
	if len(r.Payload) == 0 {
		b = append(b, "null"...)
	} else {
		var err error
		if b, err = appendData(b, r.Payload); err != nil {
			return dst, err
		}
	}
	b = append(b, `,"aggregatetype":`...)
	b = appendJSONString(b, r.AggregateType)
	b = append(b, `,"sequence":`...)
	b = strconv.AppendInt(b, r.Sequence, 10)
	if v := r.Headers["traceparent"]; v != "" {
		b = append(b, `,"traceparent":`...)
		b = appendJSONString(b, v)
	}
	if v := r.Headers["tracestate"]; v != "" {
		b = append(b, `,"tracestate":`...)
		b = appendJSONString(b, v)
	}
	return append(b, '}'), nil
}

// appendData appends payload compacted and HTML-escaped, as json.Marshal
// writes a json.RawMessage; it fails when payload is not valid JSON.
func appendData(b, payload []byte) ([]byte, error) {
	start := len(b)
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, payload); err != nil {
		return nil, fmt.Errorf("cloudevent: data: %w", err)
	}
	b = buf.Bytes()
	if data := b[start:]; needsHTMLEscape(data) {
		data = bytes.Clone(data)
		buf = bytes.NewBuffer(b[:start])
		json.HTMLEscape(buf, data)
		b = buf.Bytes()
	}
	return b, nil
}

// needsHTMLEscape reports whether compacted JSON holds a character that
// json.Marshal escapes in a RawMessage: <, >, & or U+2028/U+2029 (E2 80 A8/A9
// in UTF-8). Byte searches, unlike bytes.ContainsAny with a non-ASCII set,
// run vectorised.
func needsHTMLEscape(data []byte) bool {
	return bytes.IndexByte(data, '<') >= 0 || bytes.IndexByte(data, '>') >= 0 ||
		bytes.IndexByte(data, '&') >= 0 || bytes.Contains(data, []byte("\xe2\x80\xa8")) ||
		bytes.Contains(data, []byte("\xe2\x80\xa9"))
}

// appendUUID appends id in its canonical 8-4-4-4-12 form, as id.String().
func appendUUID(b []byte, id uuid.UUID) []byte {
	b = hex.AppendEncode(b, id[0:4])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[4:6])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[6:8])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[8:10])
	b = append(b, '-')
	return hex.AppendEncode(b, id[10:16])
}

// appendJSONString appends s as encoding/json writes a string: HTML
// characters, control characters, U+2028 and U+2029 escaped, invalid UTF-8
// replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const digits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', digits[c>>4], digits[c&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', digits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ParseCloudEvent decodes and checks a CloudEvents document produced by
// Herald. Consumers (herald tail, herald bench, tests) use it.
func ParseCloudEvent(b []byte) (CloudEvent, error) {
	var ce CloudEvent
	if err := json.Unmarshal(b, &ce); err != nil {
		return CloudEvent{}, fmt.Errorf("cloudevent: %w", err)
	}
	switch {
	case ce.SpecVersion != "1.0":
		return CloudEvent{}, fmt.Errorf("cloudevent: specversion %q, want 1.0", ce.SpecVersion)
	case ce.ID == "" || ce.Source == "" || ce.Type == "":
		return CloudEvent{}, errors.New("cloudevent: id, source and type are required")
	case ce.Sequence < 1:
		return CloudEvent{}, fmt.Errorf("cloudevent: sequence %d, want >= 1", ce.Sequence)
	}
	return ce, nil
}
