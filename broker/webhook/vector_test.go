package webhook_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker/webhook"
)

// The example of the Standard Webhooks specification, which its reference
// libraries test against (libraries/go/webhook_test.go, TestWebhookSign).
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specBody      = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func specHeader(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", sig)
	return h
}

// specVerifier verifies with the specification's secret, its clock set to
// the example's timestamp.
func specVerifier(t *testing.T, secret string) *webhook.Verifier {
	t.Helper()
	s, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatalf("ParseSecret(the specification's secret): %v", err)
	}
	v, err := webhook.NewVerifier(s)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = func() time.Time { return time.Unix(specTimestamp, 0) }
	return v
}

func TestSpecVector(t *testing.T) {
	t.Parallel()
	// The test's own reference implementation must agree first, or the
	// endpoint's checks prove nothing.
	if got, err := refSignature(specSecret, specID, "1614265330", []byte(specBody)); err != nil || got != specSignature {
		t.Fatalf("the tests' reference signer gives %q (%v), want the specification's %q", got, err, specSignature)
	}
	s, err := webhook.ParseSecret(specSecret)
	if err != nil {
		t.Fatalf("ParseSecret: %v", err)
	}
	if got := webhook.Sign([]webhook.Secret{s}, specID, specTimestamp, []byte(specBody)); got != specSignature {
		t.Fatalf("SIGNATURE DOES NOT MATCH THE STANDARD WEBHOOKS TEST VECTOR:\n got %s\nwant %s\n"+
			"no Standard Webhooks receiver would accept these deliveries", got, specSignature)
	}
	if got := webhook.Sign([]webhook.Secret{s, s}, specID, specTimestamp, []byte(specBody)); got != specSignature+" "+specSignature {
		t.Fatalf("two secrets: %q, want the signature twice, space-separated", got)
	}
	if err := specVerifier(t, specSecret).Verify(specHeader(specID, "1614265330", specSignature), []byte(specBody)); err != nil {
		t.Fatalf("Verify rejects the specification's example: %v", err)
	}
	// The reference libraries take the secret without its prefix too.
	if err := specVerifier(t, specSecret[len("whsec_"):]).Verify(specHeader(specID, "1614265330", specSignature), []byte(specBody)); err != nil {
		t.Fatalf("Verify with the unprefixed secret: %v", err)
	}
}

// TestSpecVectorAltered: any change to what is signed, or another secret,
// fails verification.
func TestSpecVectorAltered(t *testing.T) {
	t.Parallel()
	other, _ := newSecret(t)
	for _, tc := range []struct {
		name, secret, id, ts, sig, body string
		want                            error
	}{
		{"body", specSecret, specID, "1614265330", specSignature, `{"test": 2432232315}`, webhook.ErrSignature},
		{"body whitespace", specSecret, specID, "1614265330", specSignature, `{"test":2432232314}`, webhook.ErrSignature},
		{"id", specSecret, "msg_p5jXN8AQM9LWM0D4loKWxJeK", "1614265330", specSignature, specBody, webhook.ErrSignature},
		{"timestamp", specSecret, specID, "1614265331", specSignature, specBody, webhook.ErrSignature},
		{"secret", other, specID, "1614265330", specSignature, specBody, webhook.ErrSignature},
		{"version", specSecret, specID, "1614265330", "v1a" + specSignature[2:], specBody, webhook.ErrSignature},
		{"no version", specSecret, specID, "1614265330", specSignature[3:], specBody, webhook.ErrSignature},
		{"truncated", specSecret, specID, "1614265330", specSignature[:len(specSignature)-2], specBody, webhook.ErrSignature},
		{"no id", specSecret, "", "1614265330", specSignature, specBody, webhook.ErrMissingHeader},
		{"no signature", specSecret, specID, "1614265330", "", specBody, webhook.ErrMissingHeader},
		{"timestamp not a number", specSecret, specID, "1614265330.0", specSignature, specBody, webhook.ErrTimestamp},
		{"signed timestamp", specSecret, specID, "+1614265330", specSignature, specBody, webhook.ErrTimestamp},
		{"too old", specSecret, specID, "1614264900", specSignature, specBody, webhook.ErrTimestamp},
		{"too new", specSecret, specID, "1614265700", specSignature, specBody, webhook.ErrTimestamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := specVerifier(t, tc.secret).Verify(specHeader(tc.id, tc.ts, tc.sig), []byte(tc.body))
			if !errors.Is(err, tc.want) || !errors.Is(err, webhook.ErrUnverified) {
				t.Fatalf("Verify: %v, want %v (and ErrUnverified)", err, tc.want)
			}
		})
	}
}

// TestVerifyRotation: a header with several signatures, of other schemes
// too, passes when one matches any of the verifier's secrets.
func TestVerifyRotation(t *testing.T) {
	t.Parallel()
	oldText, oldSecret := newSecret(t)
	spec, err := webhook.ParseSecret(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	sig := "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== " +
		"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + specSignature
	for _, secrets := range [][]webhook.Secret{{spec}, {oldSecret, spec}, {spec, oldSecret}} {
		v, err := webhook.NewVerifier(secrets...)
		if err != nil {
			t.Fatal(err)
		}
		v.Tolerance = -1 // the example is from 2021
		if err := v.Verify(specHeader(specID, "1614265330", sig), []byte(specBody)); err != nil {
			t.Fatalf("%d secrets: %v", len(secrets), err)
		}
	}
	v, _ := webhook.NewVerifier(oldSecret)
	v.Tolerance = -1
	if err := v.Verify(specHeader(specID, "1614265330", sig), []byte(specBody)); !errors.Is(err, webhook.ErrSignature) {
		t.Fatalf("old secret only: %v, want ErrSignature", err)
	}
	// Verify, the one-call form, takes the space-separated secrets.
	h := specHeader(specID, "1614265330", specSignature)
	if err := webhook.Verify(oldText+" "+specSecret, h, []byte(specBody)); !errors.Is(err, webhook.ErrTimestamp) {
		t.Fatalf("Verify with the default tolerance: %v, want ErrTimestamp for a 2021 timestamp", err)
	}
}
