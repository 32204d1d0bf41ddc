package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func TestAnonLimiter_IsPerAddressAndPer64AndItsMapIsBounded(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	l := newAnonLimiter(clock, RateLimit{PerSecond: 1, Burst: 2})
	for i, want := range []bool{true, true, false} {
		if _, ok := l.allow("198.18.0.1"); ok != want {
			t.Fatalf("request %d of one address: allowed %v, want %v", i+1, ok, want)
		}
	}
	if _, ok := l.allow("198.18.0.2"); !ok {
		t.Fatal("another address was refused: the budget is per address")
	}
	// One /64 is one client.
	l.allow("2001:db8:1:2::1")
	l.allow("2001:db8:1:2::2")
	if d, ok := l.allow("2001:db8:1:2:ffff::3"); ok || d <= 0 {
		t.Fatalf("a third address of one /64: allowed %v (delay %v), want refused with a delay", ok, d)
	}

	// Fill the map with busy addresses: new ones share the overflow bucket.
	for i := l.size(); i < maxAnonBuckets; i++ {
		l.allow(fmt.Sprintf("198.19.%d.%d", i/256, i%256))
	}
	l.allow("198.18.9.1")
	l.allow("198.18.9.2")
	if _, ok := l.allow("198.18.9.3"); ok || l.size() != maxAnonBuckets {
		t.Fatalf("a third new address beyond the bound: allowed %v with %d buckets, want refused (one overflow bucket of burst 2) and %d buckets", ok, l.size(), maxAnonBuckets)
	}
	// Once buckets have refilled, the least recently seen one makes room.
	clock.Advance(time.Minute)
	if _, ok := l.allow("198.18.9.4"); !ok || l.size() != maxAnonBuckets {
		t.Fatalf("a new address after the buckets refilled: allowed %v with %d buckets, want allowed, %d buckets", ok, l.size(), maxAnonBuckets)
	}
}

// The per-token buckets refill with the API's clock, not the wall's: a
// spent token waits exactly the bucket's delay, and each role has its own
// size, the fallback for roles without one.
func TestLimiter_RefillsWithTheInjectedClockPerTokenAndRole(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	l := newLimiter(clock, RateLimit{PerSecond: 1, Burst: 1}, map[string]RateLimit{
		apiv1.RoleViewer: {PerSecond: 0.2, Burst: 2},
		apiv1.RoleAdmin:  {},
	})
	for i, want := range []bool{true, true, false} {
		if _, ok := l.allow("tok_v", apiv1.RoleViewer); ok != want {
			t.Fatalf("viewer request %d: allowed %v, want %v", i+1, ok, want)
		}
	}
	if d, _ := l.allow("tok_v", apiv1.RoleViewer); d != 5*time.Second {
		t.Fatalf("delay %v, want 5s: one request every 5 s, and the clock has not moved", d)
	}
	if _, ok := l.allow("tok_v2", apiv1.RoleViewer); !ok {
		t.Fatal("another viewer token was refused: the budget is per token")
	}
	clock.Advance(5*time.Second - time.Millisecond)
	if d, ok := l.allow("tok_v", apiv1.RoleViewer); ok || d <= 0 || d > time.Millisecond {
		t.Fatalf("just before the refill: allowed %v, delay %v; want refused, about 1ms", ok, d)
	}
	clock.Advance(time.Millisecond)
	if _, ok := l.allow("tok_v", apiv1.RoleViewer); !ok {
		t.Fatal("the bucket did not refill when the clock reached it")
	}
	for range 100 {
		if _, ok := l.allow("tok_a", apiv1.RoleAdmin); !ok {
			t.Fatal("a role with a zero rate is limited")
		}
	}
	if _, ok := l.allow("tok_e", apiv1.RoleEditor); !ok {
		t.Fatal("the fallback's first request was refused")
	}
	if d, ok := l.allow("tok_e", apiv1.RoleEditor); ok || d != time.Second {
		t.Fatalf("the fallback's second request: allowed %v, delay %v; want refused, 1s", ok, d)
	}
}
