package api

import (
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// A lookup that read the store before a revocation and finishes after it
// must not put the revoked token back into the cache.
func TestTokenCache_ALookupRacingARevocationDoesNotRefillTheCache(t *testing.T) {
	t.Parallel()
	c := newTokenCache()
	rec := store.TokenRecord{Token: apiv1.Token{ID: "tok_1"}, Hash: "h"}
	epoch := c.epoch() // the lookup starts
	c.invalidate("tok_1")
	c.put("h", rec, epoch) // ...and finishes with what it read before
	if _, ok := c.get("h"); ok {
		t.Fatal("a stale lookup refilled the cache after the revocation")
	}
	c.put("h", rec, c.epoch())
	if _, ok := c.get("h"); !ok {
		t.Fatal("a lookup with no revocation in between was not cached")
	}
}
