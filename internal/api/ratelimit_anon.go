package api

import (
	"container/list"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// maxAnonBuckets bounds the per-address buckets of unauthenticated
// traffic, so that the limiter itself cannot be used to fill memory.
const maxAnonBuckets = 10000

// anonLimiter rate limits unauthenticated traffic per client address:
// every request refused authentication takes one from its address's
// bucket, and once it is empty the refusal is a 429 with Retry-After
// instead of a 401. A valid token never spends from it, so a flood from
// an address (or a proxy) that legitimate clients share does not lock
// them out. IPv6 clients are counted per /64, which one client usually
// holds whole.
//
// The buckets live in an LRU list of at most maxAnonBuckets. When it is
// full, the least recently seen bucket is dropped if it has refilled (it
// is then no different from a new one); if it has not, every address is
// busy and new addresses share one overflow bucket, so that a flood of
// fresh addresses gets no more than one bucket's rate.
type anonLimiter struct {
	clock clockwork.Clock
	limit RateLimit

	mu       sync.Mutex
	lru      *list.List // of *anonBucket, most recent first
	byKey    map[netip.Prefix]*list.Element
	overflow *rate.Limiter
}

type anonBucket struct {
	key netip.Prefix
	b   *rate.Limiter
}

// anonRateLimit spends one request of the address's budget for a request
// refused for want of a valid token (reason says why). Once the budget is
// spent, it audits the refusal as a 429 and returns the problem to answer
// with; otherwise nil, and the refusal stays a 401.
func (a *API) anonRateLimit(r *http.Request, reason string) *problem.Error {
	delay, ok := a.anon.allow(requestInfoFrom(r.Context()).source.IP)
	if ok {
		return nil
	}
	e := problem.New(problem.RateLimited, "too many requests without a valid token from this address; retry after the Retry-After delay")
	e.RetryAfter = delay
	a.refused(r, actionDenied, apiv1.OutcomeDenied, httpStatus(e), "rate limit of unauthenticated requests of the address exceeded: "+reason)
	return e
}

func newAnonLimiter(clock clockwork.Clock, l RateLimit) *anonLimiter {
	a := &anonLimiter{clock: clock, limit: l, lru: list.New(), byKey: map[netip.Prefix]*list.Element{}}
	if l.PerSecond > 0 {
		a.overflow = l.bucket()
	}
	return a
}

// anonKey is the address a bucket counts: the IPv4 address, or the /64 of
// an IPv6 one. An unparsable address (not a TCP peer) shares the zero key.
func anonKey(ip string) netip.Prefix {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// allow takes one request of ip's bucket, or says how long until one is
// available.
func (a *anonLimiter) allow(ip string) (time.Duration, bool) {
	if a.limit.PerSecond <= 0 {
		return 0, true
	}
	now := a.clock.Now()
	a.mu.Lock()
	b := a.bucketLocked(anonKey(ip), now)
	a.mu.Unlock()
	return take(b, now)
}

func (a *anonLimiter) bucketLocked(key netip.Prefix, now time.Time) *rate.Limiter {
	if el, ok := a.byKey[key]; ok {
		a.lru.MoveToFront(el)
		return el.Value.(*anonBucket).b
	}
	if a.lru.Len() >= maxAnonBuckets {
		oldest := a.lru.Back().Value.(*anonBucket)
		if oldest.b.TokensAt(now) < float64(oldest.b.Burst()) {
			return a.overflow
		}
		a.lru.Remove(a.lru.Back())
		delete(a.byKey, oldest.key)
	}
	ab := &anonBucket{key: key, b: a.limit.bucket()}
	a.byKey[key] = a.lru.PushFront(ab)
	return ab.b
}

// size is how many addresses have a bucket (for tests).
func (a *anonLimiter) size() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}
