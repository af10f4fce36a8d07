package webhook_test

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldhq/herald/broker/webhook"
)

// FuzzVerify: Verify never panics, every failure wraps ErrUnverified, and
// it accepts only a header carrying the signature the independent
// reference computes (no forgery passes); what Sign produces always
// verifies.
func FuzzVerify(f *testing.F) {
	f.Add(specID, "1614265330", specSignature, []byte(specBody))
	f.Add(specID, "1614265330", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "+specSignature, []byte(specBody))
	f.Add(specID, "1614265330", specSignature+"=", []byte(specBody))
	f.Add(specID, "1614265330", "v1,"+strings.Repeat("A", 1000), []byte(specBody))
	f.Add(specID, "01614265330", specSignature, []byte(specBody))
	f.Add("", "", "", []byte(nil))
	f.Add("msg.1", "99999999999999999999", "v1, v1,, ,v1 v2,abc", []byte("{}"))
	f.Add("é\x00", "-1", "v1a,"+specSignature[3:], []byte("\xff"))
	secret, err := webhook.ParseSecret(specSecret)
	if err != nil {
		f.Fatal(err)
	}
	v, err := webhook.NewVerifier(secret)
	if err != nil {
		f.Fatal(err)
	}
	v.Tolerance = -1 // fixed inputs: no clock
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		err := v.Verify(h, body)
		if err != nil && !errors.Is(err, webhook.ErrUnverified) {
			t.Fatalf("Verify: %v does not wrap ErrUnverified", err)
		}
		want, refErr := refSignature(specSecret, id, ts, body)
		if refErr != nil {
			t.Fatal(refErr)
		}
		if err == nil {
			if id == "" || ts == "" || strings.TrimLeft(ts, "0123456789") != "" {
				t.Fatalf("accepted id %q timestamp %q", id, ts)
			}
			found := false
			for _, s := range strings.Fields(sig) {
				found = found || s == want
			}
			if !found {
				t.Fatalf("accepted signature header %q, but the reference signature is %q", sig, want)
			}
		}
		// Round trip: Sign's output verifies, for any id, time and body.
		n, perr := strconv.ParseInt(ts, 10, 64)
		if id == "" || perr != nil || n < 0 {
			return
		}
		h.Set("webhook-timestamp", strconv.FormatInt(n, 10))
		h.Set("webhook-signature", webhook.Sign([]webhook.Secret{secret}, id, n, body))
		if err := v.Verify(h, body); err != nil {
			t.Fatalf("Sign(%q, %d, %q) does not verify: %v", id, n, body, err)
		}
	})
}

// passwordOf is the password in raw's authority, found by hand (raw may
// not parse).
func passwordOf(raw string) string {
	_, rest, ok := strings.Cut(raw, "//")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(rest[:at], ":")
	return pw
}

// FuzzParseURL: ParseURL never panics; what it accepts is an http(s) URL
// with a host and no password, kept byte for byte, that New takes too;
// what it refuses wraps ErrInvalidURL; a password is never accepted nor
// quoted.
func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{
		"http://127.0.0.1:8080/hook",
		"https://hooks.example.com/services/T0/B0/X?key=a%2Fb&x=1",
		"https://tok@hooks.example.com/",
		"https://user:hunter2secret@example.com/hook",
		"https://user:hunter2%zzsecret@example.com/hook",
		"http://[::1]:9000/",
		"http://[::1/",
		"http://:80/",
		"http:opaque",
		"ftp://example.com/",
		"http://example.com:99999/",
		"http://example.com/#frag",
		"http://a@b:c@d/",
		"HTTP://EXAMPLE.COM",
		"",
		"http://exa mple.com/",
		"http://example.com/\x7f",
	} {
		f.Add(seed)
	}
	_, s := newSecret(f)
	f.Fuzz(func(t *testing.T, raw string) {
		cfg, err := webhook.ParseURL(raw)
		pw := passwordOf(raw)
		if err != nil {
			if !errors.Is(err, webhook.ErrInvalidURL) {
				t.Fatalf("ParseURL(%q): %v does not wrap ErrInvalidURL", raw, err)
			}
			// A URL with a password is refused before it is parsed, with a
			// message that shows at most its scheme and host.
			if pw != "" && !strings.Contains(err.Error(), "has a password") {
				t.Fatalf("ParseURL(%q): %q, want the refusal of the password", raw, err)
			}
			return
		}
		if cfg.URL != raw {
			t.Fatalf("ParseURL(%q).URL = %q", raw, cfg.URL)
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("ParseURL accepted %q, which net/url refuses: %v", raw, perr)
		}
		if _, set := u.User.Password(); set || pw != "" {
			t.Fatalf("ParseURL accepted %q, which has a password", raw)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" {
			t.Fatalf("ParseURL accepted %q: scheme %q host %q", raw, u.Scheme, u.Host)
		}
		if u.RawQuery != "" && strings.Contains(cfg.String(), "?"+u.RawQuery) {
			t.Fatalf("Config.String() %q shows the query", cfg.String())
		}
		cfg.Secrets = []webhook.Secret{s}
		p, err := webhook.New(cfg)
		if err != nil {
			t.Fatalf("ParseURL accepted %q, New refuses it: %v", raw, err)
		}
		_ = p.Close()
	})
}
