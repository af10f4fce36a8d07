package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// The Standard Webhooks headers, spelled as the specification spells them.
// Publish sends them in exactly this (lower) case; HTTP header names are
// case-insensitive, and Verify finds them in either case.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ContentType is the Content-Type of every delivery: the body is a
// CloudEvents JSON document in structured mode.
const ContentType = "application/cloudevents+json"

// signatureVersion tags an HMAC-SHA256 signature ("v1a" would be ed25519).
const signatureVersion = "v1"

// Sign returns the webhook-signature header for one delivery: for each
// secret, "v1," followed by the base64 HMAC-SHA256 of id + "." + timestamp
// + "." + body, separated by spaces. timestamp is in Unix seconds.
func Sign(secrets []Secret, id string, timestamp int64, body []byte) string {
	return string(appendSignatures(nil, secrets, id, timestamp, body))
}

// appendSignatures appends the signature header to dst.
func appendSignatures(dst []byte, secrets []Secret, id string, timestamp int64, body []byte) []byte {
	var ts [20]byte
	tsText := strconv.AppendInt(ts[:0], timestamp, 10)
	var sum [sha256.Size]byte
	for i, s := range secrets {
		if i > 0 {
			dst = append(dst, ' ')
		}
		mac := mac(s.key, id, tsText, body, sum[:0])
		dst = append(dst, signatureVersion+","...)
		dst = base64.StdEncoding.AppendEncode(dst, mac)
	}
	return dst
}

// mac is the HMAC-SHA256 of the signed content, appended to dst.
func mac(key []byte, id string, timestamp, body, dst []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(timestamp)
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(dst)
}
