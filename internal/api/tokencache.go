package api

import (
	"net/http"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// tokenCache keeps tokens found by hash so a request costs no store read;
// revocation invalidates by id. A lookup that raced an invalidation must
// not put back what was revoked, so put only succeeds when no
// invalidation happened since the epoch read before the lookup.
type tokenCache struct {
	mu     sync.RWMutex
	gen    uint64
	byHash map[string]store.TokenRecord
	// watchers are closed when their token is revoked, to end the long
	// requests (wait_for, watch) it opened; revoked remembers revocations
	// for a request that asks after the fact.
	watchers map[string]chan struct{}
	revoked  map[string]bool
}

func newTokenCache() *tokenCache {
	return &tokenCache{byHash: map[string]store.TokenRecord{}, watchers: map[string]chan struct{}{}, revoked: map[string]bool{}}
}

// revocation is closed once token id is revoked.
func (c *tokenCache) revocation(id string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.watchers[id]
	if !ok {
		ch = make(chan struct{})
		if c.revoked[id] {
			close(ch)
		} else {
			c.watchers[id] = ch
		}
	}
	return ch
}

func (c *tokenCache) get(hash string) (store.TokenRecord, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.byHash[hash]
	return t, ok
}

// epoch is read before a store lookup and handed to put.
func (c *tokenCache) epoch() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

func (c *tokenCache) put(hash string, t store.TokenRecord, epoch uint64) {
	c.mu.Lock()
	if c.gen == epoch {
		c.byHash[hash] = t
	}
	c.mu.Unlock()
}

// invalidate forgets a revoked token and ends the long requests it opened.
func (c *tokenCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h, t := range c.byHash {
		if t.ID == id {
			delete(c.byHash, h)
		}
	}
	c.revoked[id] = true
	if ch, ok := c.watchers[id]; ok {
		close(ch)
		delete(c.watchers, id)
	}
}

// reset empties the cache (a lookup in flight puts nothing back) and
// returns the ids whose revocation long requests wait for.
func (c *tokenCache) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.byHash)
	ids := make([]string, 0, len(c.watchers))
	for id := range c.watchers {
		ids = append(ids, id)
	}
	return ids
}

// revocation is closed when the caller's token is revoked: long requests
// wait on it too, so a revoked token stops receiving at once.
// A console session's requests end when it signs out too.
func (a *API) revocation(r *http.Request) <-chan struct{} {
	info := requestInfoFrom(r.Context())
	token := a.tokens.revocation(info.principal.TokenID)
	if info.uiSession == "" {
		return token
	}
	session := a.tokens.revocation(info.uiSession)
	either := make(chan struct{})
	go func() {
		select {
		case <-token:
		case <-session:
		case <-r.Context().Done():
			return
		}
		close(either)
	}()
	return either
}
