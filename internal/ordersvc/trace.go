package ordersvc

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type traceContextKey struct{}

type traceContext struct{ parent, state string }

// ContextWithTraceContext returns ctx carrying a W3C trace context (the
// traceparent and tracestate headers of the request being served). Unless
// Config.EventHeaders says otherwise, the events of the request are stored
// with it, and the relay passes it on as the CloudEvents traceparent and
// tracestate extensions. Trace context is advisory: it never fails a
// request. A traceparent that is not a valid version-00 header is dropped,
// and tracestate with it; a tracestate that is not a valid W3C list (at
// most 512 bytes and 32 members of printable ASCII, each key=value) is
// dropped alone, as W3C Trace Context allows.
func ContextWithTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	if !validTraceparent(traceparent) {
		return ctx
	}
	if !validTracestate(tracestate) {
		tracestate = ""
	}
	return context.WithValue(ctx, traceContextKey{}, traceContext{traceparent, tracestate})
}

// TraceHeaders returns the event headers of the trace context in ctx, or
// nil. It is the default Config.EventHeaders. When ctx has an
// OpenTelemetry span (the request's server span, with tracing on), its span
// context is the trace context, so a consumer's trace continues from the
// span of the request that wrote the event; otherwise it is what
// ContextWithTraceContext put in ctx (the client's headers, unchanged).
func TraceHeaders(ctx context.Context) map[string]string {
	if trace.SpanContextFromContext(ctx).IsValid() {
		h := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, h)
		if validTraceparent(h["traceparent"]) {
			if h["tracestate"] != "" && !validTracestate(h["tracestate"]) {
				delete(h, "tracestate")
			}
			return h
		}
	}
	tc, ok := ctx.Value(traceContextKey{}).(traceContext)
	if !ok {
		return nil
	}
	h := map[string]string{"traceparent": tc.parent}
	if tc.state != "" {
		h["tracestate"] = tc.state
	}
	return h
}

// validTraceparent checks "00-<32 hex trace id>-<16 hex parent id>-<2 hex
// flags>" with ids that are not all zeros, in lower case as W3C requires.
func validTraceparent(s string) bool {
	if len(s) != 55 || s[:3] != "00-" || s[35] != '-' || s[52] != '-' {
		return false
	}
	hex := func(part string) bool {
		nonZero := false
		for i := 0; i < len(part); i++ {
			c := part[i]
			switch {
			case c >= '1' && c <= '9', c >= 'a' && c <= 'f':
				nonZero = true
			case c == '0':
			default:
				return false
			}
		}
		return nonZero
	}
	flags := s[53:]
	return hex(s[3:35]) && hex(s[36:52]) && (hex(flags) || flags == "00")
}

// validTracestate checks the W3C tracestate list: at most 512 bytes and 32
// members separated by commas, each "key=value" between optional spaces or
// tabs (empty members are allowed), where the key is a lower-case simple key
// or tenant@system, and the value up to 256 printable ASCII characters
// other than ',' and '=', not ending in a space.
func validTracestate(s string) bool {
	if len(s) > 512 {
		return false
	}
	members := 0
	for m := range strings.SplitSeq(s, ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		members++
		key, value, ok := strings.Cut(m, "=")
		if !ok || members > 32 || !validTracestateKey(key) || !validTracestateValue(value) {
			return false
		}
	}
	return true
}

// validTracestateKey checks a simple key (a lower-case letter, then up to
// 255 of a-z 0-9 _ - * /) or a multi-tenant one (tenant@system: up to 241
// of those starting with a letter or digit, then up to 14 starting with a
// letter).
func validTracestateKey(k string) bool {
	keyChars := func(s string, maxLen int, digitFirst bool) bool {
		if s == "" || len(s) > maxLen {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c >= 'a' && c <= 'z':
			case c >= '0' && c <= '9':
				if i == 0 && !digitFirst {
					return false
				}
			case i > 0 && (c == '_' || c == '-' || c == '*' || c == '/'):
			default:
				return false
			}
		}
		return true
	}
	if tenant, system, ok := strings.Cut(k, "@"); ok {
		return keyChars(tenant, 241, true) && keyChars(system, 14, false)
	}
	return keyChars(k, 256, false)
}

// validTracestateValue checks up to 256 characters of 0x20-0x7E other than
// ',' and '=', the last not a space.
func validTracestateValue(v string) bool {
	if v == "" || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}
