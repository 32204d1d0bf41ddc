package api

import (
	"context"
	"sync"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// hub tells waiters that an environment changed. Each environment has at
// most one open channel; Notify closes it, so every goroutine waiting on it
// wakes at once and no change is lost between reading and waiting:
// a waiter takes the channel first, then reads the store, then waits.
type hub struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
	// any is closed on the next change of any environment (for watches of
	// a list), nil until someone waits for one.
	any chan struct{}
}

// AnyChanged returns a channel that is closed on the next change of any
// environment.
func (h *hub) AnyChanged() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.any == nil {
		h.any = make(chan struct{})
	}
	return h.any
}

// newHub returns an empty hub.
func newHub() *hub {
	return &hub{chans: make(map[string]chan struct{})}
}

// Changed returns a channel that is closed on the next change of id.
func (h *hub) Changed(id string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.chans[id]
	if !ok {
		ch = make(chan struct{})
		h.chans[id] = ch
	}
	return ch
}

// Notify wakes everyone waiting on any of ids.
func (h *hub) Notify(ids ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.any != nil && len(ids) > 0 {
		close(h.any)
		h.any = nil
	}
	for _, id := range ids {
		if ch, ok := h.chans[id]; ok {
			close(ch)
			delete(h.chans, id)
		}
	}
}

// NotifyAll wakes every waiter, whatever it waits for.
func (h *hub) NotifyAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.any != nil {
		close(h.any)
		h.any = nil
	}
	for id, ch := range h.chans {
		close(ch)
		delete(h.chans, id)
	}
}

// Committed is the API's subscription to the store's commits: it wakes the
// waiters and watchers of every environment written, and drops every
// token the commit revoked from the authentication cache, so that the
// answer to a revocation comes after the token stopped working.
func (a *API) Committed(c store.Commit) {
	if c.Resync {
		a.resync()
		return
	}
	a.hub.Notify(c.Environments...)
	for _, id := range c.Tokens {
		// A commit that writes a token creates it or revokes it: the
		// stored record says which. One that cannot be read is dropped
		// too: the cache must never outlive a revocation.
		t, err := a.store.GetToken(context.Background(), id)
		if err == nil && t.RevokedAt == nil {
			continue
		}
		a.tokens.invalidate(id)
	}
	a.uiSessionsRevoked(c)
}

// resync follows a Resync commit: other servers' commits may have gone
// unheard. Every waiter reads again, the token cache starts empty, and
// the long requests of every token or console session that is revoked
// (or cannot be read) end, as if their revocation had been heard.
func (a *API) resync() {
	a.hub.NotifyAll()
	ctx := context.Background()
	for _, id := range a.tokens.reset() {
		if t, err := a.store.GetToken(ctx, id); err == nil && t.RevokedAt == nil {
			continue
		}
		if s, err := a.store.GetUISession(ctx, id); err == nil && s.RevokedAt == nil {
			continue
		}
		a.tokens.invalidate(id)
	}
}
