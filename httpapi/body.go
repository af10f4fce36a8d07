package httpapi

import (
	"fmt"
	"net/http"
	"strings"
)

// SupportedContentEncoding is the only content coding the API accepts on a
// request body: identity, that is, none. A compressed body (gzip, br, …) is
// refused with 415 and an Accept-Encoding: identity header (RFC 7694).
const SupportedContentEncoding = "identity"

// checkBodyHeaders refuses, from its headers alone and before any of it is
// read, a body every route would refuse: one declared longer than
// MaxBodyBytes (413), and one in a content coding other than identity
// (415). A client that declares a large body and never sends it gets its
// answer at once instead of waiting for the server's read timeout. Either
// answer closes the connection: net/http would otherwise read what is left
// of a small body before answering, waiting for one that never comes.
func checkBodyHeaders(w http.ResponseWriter, r *http.Request) *problem {
	if r.ContentLength > MaxBodyBytes {
		w.Header().Set("Connection", "close")
		return newProblem(eTooLarge, fmt.Sprintf("The request body exceeds %d bytes.", MaxBodyBytes))
	}
	if r.ContentLength == 0 { // no body: nothing is encoded
		return nil
	}
	for _, v := range r.Header.Values("Content-Encoding") {
		for coding := range strings.SplitSeq(v, ",") {
			coding = strings.TrimSpace(coding)
			if coding == "" || strings.EqualFold(coding, SupportedContentEncoding) {
				continue
			}
			w.Header().Set("Accept-Encoding", SupportedContentEncoding)
			w.Header().Set("Connection", "close")
			return newProblem(eUnsupportedType, fmt.Sprintf(
				"Content-Encoding %s is not supported; send the body uncompressed (Content-Encoding identity, or none).",
				truncate(coding, 40)))
		}
	}
	return nil
}
