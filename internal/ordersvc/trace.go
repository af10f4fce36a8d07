package ordersvc

import "context"

type traceContextKey struct{}

type traceContext struct{ parent, state string }

// ContextWithTraceContext returns ctx carrying a W3C trace context (the
// traceparent and tracestate headers of the request being served). Unless
// Config.EventHeaders says otherwise, the events of the request are stored
// with it, and the relay passes it on as the CloudEvents traceparent and
// tracestate extensions. A traceparent that is not a valid version-00
// header is dropped, and tracestate with it.
func ContextWithTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	if !validTraceparent(traceparent) {
		return ctx
	}
	if len(tracestate) > 512 { // the W3C limit
		tracestate = ""
	}
	return context.WithValue(ctx, traceContextKey{}, traceContext{traceparent, tracestate})
}

// TraceHeaders returns the event headers of the trace context in ctx (see
// ContextWithTraceContext), or nil. It is the default Config.EventHeaders.
func TraceHeaders(ctx context.Context) map[string]string {
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
