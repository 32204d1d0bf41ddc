package api

import (
	"net/http"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"

	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
)

// rateLimit applies the per-token limit of the caller's role, when one
// is configured.
func (a *API) rateLimit(r *http.Request) error {
	p := requestInfoFrom(r.Context()).principal
	delay, ok := a.limiter.allow(p.TokenID, p.Role)
	if ok {
		return nil
	}
	e := a.deny(r, auth.RateLimited, "rate limit of role "+p.Role+" exceeded")
	e.RetryAfter = delay
	return e
}

// RateLimit is a token bucket: PerSecond requests per second on average,
// Burst at once. A zero PerSecond means no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// bucket makes the limiter for one token; a Burst of 0 means the rate
// rounded down, at least 1.
func (l RateLimit) bucket() *rate.Limiter {
	burst := l.Burst
	if burst <= 0 {
		burst = max(1, int(l.PerSecond))
	}
	return rate.NewLimiter(rate.Limit(l.PerSecond), burst)
}

// limiter holds one token bucket per API token, sized by the token's role.
type limiter struct {
	clock    clockwork.Clock
	fallback RateLimit
	perRole  map[string]RateLimit
	mu       sync.Mutex
	perID    map[string]*rate.Limiter
	// live counts the replicas sharing the limits (nil: this one alone):
	// each enforces 1/live of them (share).
	live func() int
}

func newLimiter(clock clockwork.Clock, fallback RateLimit, perRole map[string]RateLimit) *limiter {
	return &limiter{clock: clock, fallback: fallback, perRole: perRole, perID: map[string]*rate.Limiter{}}
}

// limitOf is the limit of a role: its own when configured, else the fallback.
func (l *limiter) limitOf(role string) RateLimit {
	if rl, ok := l.perRole[role]; ok {
		return rl
	}
	return l.fallback
}

// allow takes one request from the bucket of token id (of role), or says
// how long to wait: the delay the bucket's reservation would have had.
func (l *limiter) allow(id, role string) (time.Duration, bool) {
	rl := l.limitOf(role)
	if rl.PerSecond <= 0 {
		return 0, true
	}
	if l.live != nil {
		rl = rl.share(l.live())
	}
	now := l.clock.Now()
	l.mu.Lock()
	b, ok := l.perID[id]
	if !ok {
		b = rl.bucket()
		l.perID[id] = b
	} else if b.Limit() != rate.Limit(rl.PerSecond) {
		// The replicas changed: the bucket keeps its tokens, at the new
		// rate and burst.
		fresh := rl.bucket()
		b.SetLimitAt(now, fresh.Limit())
		b.SetBurstAt(now, fresh.Burst())
	}
	l.mu.Unlock()
	return take(b, now)
}

// share is one replica's part of l when n replicas enforce it: the rate
// divided by n, and the burst too, rounded up and at least 1, so that
// together they admit at most the burst plus n-1.
func (l RateLimit) share(n int) RateLimit {
	if n <= 1 {
		return l
	}
	burst := l.Burst
	if burst <= 0 {
		burst = max(1, int(l.PerSecond))
	}
	return RateLimit{PerSecond: l.PerSecond / float64(n), Burst: (burst + n - 1) / n}
}

// take takes one request from bucket b at now, or says how long until
// one is available (the delay its reservation would have had).
func take(b *rate.Limiter, now time.Time) (time.Duration, bool) {
	res := b.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}
