package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/heraldhq/herald/order"
)

// authenticator checks bearer tokens. Tokens are kept as SHA-256 digests so
// that the constant-time comparison does not leak their length either.
type authenticator struct {
	open               bool // no token configured: everything is allowed
	apiSet, adminSet   bool
	apiHash, adminHash [sha256.Size]byte
}

func newAuthenticator(apiToken, adminToken string) authenticator {
	return authenticator{
		open:      apiToken == "" && adminToken == "",
		apiSet:    apiToken != "",
		adminSet:  adminToken != "",
		apiHash:   sha256.Sum256([]byte(apiToken)),
		adminHash: sha256.Sum256([]byte(adminToken)),
	}
}

// actor returns who presents the request's bearer token: ActorAdmin,
// ActorAPI, or "" when the token is missing or matches neither.
func (a authenticator) actor(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return ""
	}
	h := sha256.Sum256([]byte(token))
	// Both comparisons always run, so timing does not tell which matched.
	isAdmin := subtle.ConstantTimeCompare(h[:], a.adminHash[:]) & boolInt(a.adminSet)
	isAPI := subtle.ConstantTimeCompare(h[:], a.apiHash[:]) & boolInt(a.apiSet)
	switch {
	case isAdmin == 1:
		return ActorAdmin
	case isAPI == 1:
		return ActorAPI
	}
	return ""
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type actorKey struct{}

// actorFrom returns the actor authorize stored in ctx.
func actorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok {
		return a
	}
	return ActorAnonymous
}

// authorize lets a request through to h if its token grants access a:
// 401 for a missing or unknown token, 403 for the API token on an admin
// route. It records the actor in the request's context.
func (s *server) authorize(a access, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor := ActorAnonymous
		if a != public && !s.auth.open {
			actor = s.auth.actor(r)
			switch {
			case actor == "":
				w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
				writeProblem(w, r, newProblem(order.EUNAUTHORIZED,
					"A valid bearer token is required (Authorization: Bearer <token>)."))
				return
			case a == admin && actor != ActorAdmin:
				writeProblem(w, r, newProblem(order.EFORBIDDEN, "This route requires the admin token."))
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
	})
}

// ErrPublicWithoutTokens is returned by CheckListenAddr for a non-loopback
// address when no token is configured.
var ErrPublicWithoutTokens = errors.New("httpapi: refusing to listen on a non-loopback address without tokens")

// CheckListenAddr enforces the rule for running without tokens: with
// no token configured the API is open to anyone who can reach it, so it may
// listen on a loopback address only (127.0.0.0/8, ::1 or "localhost"). An
// empty host (":8080") means every interface and is refused too. With
// tokensSet, any well-formed address is accepted.
//
// The error, wrapping ErrPublicWithoutTokens, says what to do about it;
// callers should print it as is.
func CheckListenAddr(addr string, tokensSet bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("httpapi: listen address %q: %w", addr, err)
	}
	if tokensSet || isLoopbackHost(host) {
		return nil
	}
	shown := host
	if shown == "" {
		shown = "every interface"
	}
	return fmt.Errorf("%w: %q (%s) is reachable from other machines and no token is set, so anyone could "+
		"create orders and replay dead letters. Set --api-token and --admin-token (HERALD_API_TOKEN, "+
		"HERALD_ADMIN_TOKEN), or listen on 127.0.0.1", ErrPublicWithoutTokens, addr, shown)
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false // another name: it may resolve to anything
	}
	return ip.WithZone("").Unmap().IsLoopback()
}
