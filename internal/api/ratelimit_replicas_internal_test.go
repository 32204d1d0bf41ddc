package api

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// With n live replicas each enforces 1/n of a token's limit, burst
// rounded up; when the count changes, a token's bucket takes the new
// share at its next request.
func TestLimiter_EnforcesItsShareOfTheReplicas(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	var live atomic.Int64
	live.Store(2)
	l := newLimiter(clock, RateLimit{PerSecond: 10, Burst: 5}, nil)
	l.live = func() int { return int(live.Load()) }

	admitted := func() int {
		n := 0
		for range 100 {
			if _, ok := l.allow("tok_a", apiv1.RoleEditor); ok {
				n++
			}
		}
		return n
	}
	if got := admitted(); got != 3 { // ceil(5/2)
		t.Fatalf("burst with 2 replicas: %d admitted, want 3", got)
	}
	clock.Advance(time.Second) // 5 a second each: the bucket is full again (3)
	if got := admitted(); got != 3 {
		t.Fatalf("after a second with 2 replicas: %d admitted, want 3", got)
	}
	live.Store(1)
	clock.Advance(time.Second)
	if got := admitted(); got != 3 {
		t.Fatalf("the first second after the other replica left: %d admitted, want 3 (the bucket keeps what it held)", got)
	}
	clock.Advance(time.Second) // alone: 10 a second, burst 5
	if got := admitted(); got != 5 {
		t.Fatalf("after a second alone: %d admitted, want 5 (the whole burst)", got)
	}
	if d, ok := l.allow("tok_a", apiv1.RoleEditor); ok || d != 100*time.Millisecond {
		t.Fatalf("a spent token alone: allowed %v, delay %v; want refused for 100ms (1/10 s)", ok, d)
	}
}

func TestRateLimitShare_DividesRateAndBurstRoundingUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   RateLimit
		n    int
		want RateLimit
	}{
		{RateLimit{PerSecond: 10, Burst: 5}, 1, RateLimit{PerSecond: 10, Burst: 5}},
		{RateLimit{PerSecond: 10, Burst: 5}, 0, RateLimit{PerSecond: 10, Burst: 5}},
		{RateLimit{PerSecond: 10, Burst: 5}, 3, RateLimit{PerSecond: 10.0 / 3, Burst: 2}},
		{RateLimit{PerSecond: 9}, 2, RateLimit{PerSecond: 4.5, Burst: 5}},
		{RateLimit{PerSecond: 1, Burst: 1}, 4, RateLimit{PerSecond: 0.25, Burst: 1}},
	} {
		if got := tc.in.share(tc.n); got != tc.want {
			t.Errorf("%+v.share(%d) = %+v, want %+v", tc.in, tc.n, got, tc.want)
		}
	}
}
