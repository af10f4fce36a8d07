package app

import (
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// mask replaces a secret in messages and logs.
const mask = "xxxxx"

// RedactURL returns raw, a database or broker URL (or a comma-separated list
// of them) or a PostgreSQL key=value connection string, with every secret in
// it masked, for messages and logs. It masks every form pgx and the broker
// clients accept: the password of scheme://user:PASSWORD@host, the userinfo
// of a NATS URL that has no password (a token, nats://TOKEN@host), the
// password and sslpassword query parameters, and the password= and
// sslpassword= values of a key=value string, quoted or not. Input too
// malformed to parse is masked too, erring on the side of masking more. A
// webhook URL (http, https) shows its scheme and host only: its path and
// query often carry the endpoint's own token.
func RedactURL(raw string) string {
	if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		shown := u.Scheme + "://" + u.Host
		if u.Path != "" || u.RawQuery != "" {
			shown += "/…"
		}
		return scrub(shown, secretsOf(raw))
	}
	var out string
	if isKeyValueDSN(raw) {
		out = redactSpans(raw, keyValueSecretSpans(raw))
	} else {
		parts := strings.Split(raw, ",")
		for i, p := range parts {
			parts[i] = redactURLPart(p)
		}
		out = strings.Join(parts, ",")
	}
	return scrub(out, secretsOf(raw))
}

// RedactError returns err with every secret of the connection string conn
// (and the further secrets given) masked in its message. errors.Is and
// errors.As still see err; its message must not be printed by unwrapping.
func RedactError(err error, conn string, secrets ...string) error {
	if err == nil {
		return nil
	}
	all := secretsOf(conn)
	for _, s := range secrets {
		all = addSecret(all, s, true)
	}
	msg := scrub(err.Error(), all)
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error whose message has its secrets masked.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// withheld replaces the detail of a parse error that would show a part of
// the password.
const withheld = "the connection string does not parse (the details are withheld: they would show part of the password)"

// parseProblem explains why pgx refused the connection string conn, without
// its secrets: pgx's own message, without the (best-effort redacted)
// connection string it starts with, with every secret masked, or withheld
// when it still shares four characters in a row with a password (a URL
// parser's complaint about a malformed password, say).
func parseProblem(err error, conn string) string {
	msg := err.Error()
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		msg = pce.Error()
		if rest, ok := strings.CutPrefix(msg, "cannot parse `"); ok {
			if i := strings.LastIndex(rest, "`: "); i >= 0 {
				msg = rest[i+len("`: "):]
			}
		}
	}
	secrets := secretsOf(conn)
	msg = scrub(msg, secrets)
	for _, s := range secrets {
		for i := 0; i+4 <= len(s); i++ {
			if strings.Contains(msg, s[i:i+4]) {
				return withheld
			}
		}
	}
	return msg
}

// innermost returns the error at the end of err's chain: a *url.Error's
// message repeats the whole URL, its cause only the part it refuses.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// scrub replaces every occurrence of each secret in s by mask, the longest
// secrets first.
func scrub(s string, secrets []string) string {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, mask)
		}
	}
	return s
}

// minFragment is the shortest piece of a password that is masked on its
// own: a malformed password may reach a message in pieces (split at a space
// or a slash), and pieces shorter than this would mask ordinary words.
const minFragment = 4

// addSecret adds s, when not empty, to secrets; a fragment only when it is
// at least minFragment bytes long.
func addSecret(secrets []string, s string, whole bool) []string {
	if s == "" || (!whole && len(s) < minFragment) || slices.Contains(secrets, s) {
		return secrets
	}
	return append(secrets, s)
}

// secretsOf lists every string in raw that may be a secret, as written and
// decoded, with its pieces: the password of each URL's userinfo (also as
// the text up to the last '@', for a password with a raw '/', '?' or ','),
// a NATS token, the password and sslpassword query values, and the
// password= and sslpassword= values of a key=value string.
func secretsOf(raw string) []string {
	var out []string
	add := func(s string) {
		out = addSecret(out, s, true)
		for _, dec := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			if d, err := dec(s); err == nil {
				out = addSecret(out, d, true)
			}
		}
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(" \t\r\n/?#@:,&=;'\"\\", r) }) {
			out = addSecret(out, f, false)
		}
	}
	if isKeyValueDSN(raw) {
		for _, sp := range keyValueSecretSpans(raw) {
			v := raw[sp[0]:sp[1]]
			add(v)
			add(unquoteKeyValue(v))
		}
		return out
	}
	parts := strings.Split(raw, ",")
	if strings.Count(raw, "://") <= 1 {
		// One URL, perhaps of several hosts, or a password with a raw ','.
		parts = append(parts, raw)
	}
	for _, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			scheme, rest = "", p // user:password@host… without a scheme
		}
		// The userinfo ends at the last '@' of the authority, or of the
		// whole rest for a password with a raw '?' or '#' in it.
		for _, end := range []int{strings.IndexAny(rest, "?#"), len(rest)} {
			if end < 0 {
				end = len(rest)
			}
			at := strings.LastIndex(rest[:end], "@")
			if at < 0 {
				continue
			}
			user, pw, hasPW := strings.Cut(rest[:at], ":")
			switch {
			case hasPW:
				add(pw)
			case isTokenScheme(scheme):
				add(user)
			}
		}
		for _, sp := range querySecretSpans(p) {
			add(p[sp[0]:sp[1]])
		}
	}
	return out
}

// redactURLPart masks the userinfo password (or NATS token) and the
// password query values of one URL.
func redactURLPart(p string) string {
	var spans [][2]int
	// Without a scheme, user:password@host… is still taken for userinfo.
	scheme, rest, ok := strings.Cut(p, "://")
	start := len(scheme) + len("://")
	if !ok {
		scheme, rest, start = "", p, 0
	}
	end := strings.IndexAny(rest, "?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		if colon := strings.Index(rest[:at], ":"); colon >= 0 {
			spans = append(spans, [2]int{start + colon + 1, start + at})
		} else if isTokenScheme(scheme) {
			spans = append(spans, [2]int{start, start + at})
		}
	}
	spans = append(spans, querySecretSpans(p)...)
	return redactSpans(p, spans)
}

// isTokenScheme reports whether a URL of scheme takes a token as the whole
// userinfo: NATS does (nats://TOKEN@host).
func isTokenScheme(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}

// isPasswordKey reports whether a connection setting holds a secret.
func isPasswordKey(k string) bool {
	k = strings.ToLower(strings.TrimSpace(k))
	return k == "password" || k == "sslpassword"
}

// querySecretSpans returns where the values of the password and sslpassword
// query parameters of the URL p are, keys compared decoded.
func querySecretSpans(p string) [][2]int {
	q := strings.Index(p, "?")
	if q < 0 {
		return nil
	}
	end := len(p)
	if h := strings.Index(p[q:], "#"); h >= 0 {
		end = q + h
	}
	var spans [][2]int
	for i := q + 1; i < end; {
		j := strings.IndexAny(p[i:end], "&;")
		if j < 0 {
			j = end - i
		}
		param := p[i : i+j]
		if k, _, ok := strings.Cut(param, "="); ok {
			key, err := url.QueryUnescape(k)
			if err != nil {
				key = k
			}
			if isPasswordKey(key) {
				spans = append(spans, [2]int{i + len(k) + 1, i + j})
			}
		}
		i += j + 1
	}
	return spans
}

// isKeyValueDSN reports whether raw is a PostgreSQL key=value connection
// string (host=… dbname=…) rather than a URL: no scheme, and it starts with
// a keyword and '='.
func isKeyValueDSN(raw string) bool {
	s := strings.TrimLeft(raw, " \t\r\n\v\f")
	if strings.Contains(s, "://") {
		return false
	}
	i := 0
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || i > 0 && s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		return false
	}
	return strings.HasPrefix(strings.TrimLeft(s[i:], " \t\r\n\v\f"), "=")
}

func isSpace(c byte) bool { return strings.IndexByte(" \t\r\n\v\f", c) >= 0 }

// keyValueSecretSpans returns where the password and sslpassword values of
// the key=value string s are, read as pgx reads them (a quoted value ends
// at the closing quote, an unquoted one at a space, a backslash escapes the
// next character). An unquoted value also takes the words after it that are
// no keyword (no '=' follows them): the rest of a password with an unquoted
// space, which pgx refuses.
func keyValueSecretSpans(s string) [][2]int {
	var spans [][2]int
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		ks := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[ks:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			continue // a word that is no keyword
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		vs := i
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i++ // the closing quote
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
		i = min(i, len(s))
		if !isPasswordKey(key) {
			continue
		}
		if !quoted {
			for {
				k := i
				for k < len(s) && isSpace(s[k]) {
					k++
				}
				w := k
				for w < len(s) && s[w] != '=' && !isSpace(s[w]) {
					w++
				}
				n := w
				for n < len(s) && isSpace(s[n]) {
					n++
				}
				if w == k || n < len(s) && s[n] == '=' {
					break
				}
				i = w
			}
		}
		spans = append(spans, [2]int{vs, i})
	}
	return spans
}

// unquoteKeyValue returns a key=value value as pgx reads it: without its
// quotes and with its backslash escapes resolved.
func unquoteKeyValue(v string) string {
	v = strings.TrimPrefix(v, "'")
	v = strings.TrimSuffix(v, "'")
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// redactSpans replaces the byte ranges spans of s, which do not overlap,
// by mask.
func redactSpans(s string, spans [][2]int) string {
	if len(spans) == 0 {
		return s
	}
	spans = slices.Clone(spans)
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		if sp[0] < last {
			continue
		}
		b.WriteString(s[last:sp[0]])
		b.WriteString(mask)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}
