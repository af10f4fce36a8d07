package webui

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Login attempts allowed per client address: loginBurst at once, then one
// every loginEvery. An operator who mistypes the token a few times is not
// slowed down; guessing a token through the form is limited to about 360
// tries an hour per address.
const (
	loginBurst = 5
	loginEvery = 10 * time.Second
	// maxLoginClients bounds the addresses tracked (memory). Past it,
	// idle addresses are forgotten first; if none is idle, new addresses
	// share one budget, so that the table cannot grow without bound. An
	// attacker with that many addresses can then use up the shared budget
	// and hold new logins back; sessions already open are not affected.
	maxLoginClients = 4096
)

// overflowKey is the bucket shared by addresses past maxLoginClients.
const overflowKey = "overflow"

// loginLimiter limits attempts at the web UI's login form per client
// address (the API's bearer tokens are checked per request, without it).
// It keys by the connection's address, not a forwarded header a client can
// write: behind a reverse proxy every operator shares the proxy's budget.
type loginLimiter struct {
	now func() time.Time

	mu        sync.Mutex
	clients   map[string]*rate.Limiter
	lastPrune time.Time // a full table is swept at most once per loginEvery
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{now: time.Now, clients: make(map[string]*rate.Limiter)}
}

// allow takes one attempt from remoteAddr's budget. When none is left it
// reports how long until the next one.
func (l *loginLimiter) allow(remoteAddr string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limiterFor(clientKey(remoteAddr), now)
	if lim.AllowN(now, 1) {
		return true, 0
	}
	res := lim.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	res.CancelAt(now)
	return false, wait
}

// limiterFor returns key's limiter, making room for a new one; l.mu is held.
func (l *loginLimiter) limiterFor(key string, now time.Time) *rate.Limiter {
	if lim, ok := l.clients[key]; ok {
		return lim
	}
	if len(l.clients) >= maxLoginClients {
		if now.Sub(l.lastPrune) >= loginEvery {
			l.lastPrune = now
			for k, lim := range l.clients {
				if lim.TokensAt(now) >= loginBurst {
					delete(l.clients, k) // idle: its budget is full again
				}
			}
		}
		if len(l.clients) >= maxLoginClients {
			key = overflowKey
			if lim, ok := l.clients[key]; ok {
				return lim
			}
		}
	}
	lim := rate.NewLimiter(rate.Every(loginEvery), loginBurst)
	l.clients[key] = lim
	return lim
}

// clientKey is the host of remoteAddr; an IPv6 address counts as its /64,
// which one client usually holds whole.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
