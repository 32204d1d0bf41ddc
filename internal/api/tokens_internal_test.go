package api

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// A Resync (the store may have missed other servers' commits) wakes every
// waiter, empties the token cache, and ends the long requests of a token
// revoked meanwhile, not those of a token still valid.
func TestCommitted_ResyncWakesEveryoneAndRechecksRevocations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "isolationd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	live := store.TokenRecord{Token: apiv1.Token{ID: "tok_live"}, Hash: strings.Repeat("a", 64)}
	gone := store.TokenRecord{Token: apiv1.Token{ID: "tok_gone"}, Hash: strings.Repeat("b", 64), RevokedAt: &now}
	if err := st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateToken(ctx, live); err != nil {
			return err
		}
		return tx.CreateToken(ctx, gone)
	}); err != nil {
		t.Fatal(err)
	}
	a := &API{store: st, hub: newHub(), tokens: newTokenCache()}
	for _, r := range []store.TokenRecord{live, gone} {
		a.tokens.put(r.Hash, r, a.tokens.epoch())
	}
	liveDone, goneDone := a.tokens.revocation(live.ID), a.tokens.revocation(gone.ID)
	changed, anyChanged := a.hub.Changed("env_1"), a.hub.AnyChanged()

	a.Committed(store.Commit{Resync: true})

	for name, ch := range map[string]<-chan struct{}{"an environment's waiter": changed, "a list's watcher": anyChanged, "the revoked token's long request": goneDone} {
		select {
		case <-ch:
		default:
			t.Errorf("%s was not woken by the Resync", name)
		}
	}
	select {
	case <-liveDone:
		t.Error("the long request of a valid token was ended")
	default:
	}
	for _, r := range []store.TokenRecord{live, gone} {
		if _, ok := a.tokens.get(r.Hash); ok {
			t.Errorf("token %s is still cached after the Resync", r.ID)
		}
	}
}
