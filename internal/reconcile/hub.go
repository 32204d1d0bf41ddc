package reconcile

import "sync"

// Hub tells waiters that an environment changed. Each environment has at
// most one open channel; Notify closes it, so every goroutine waiting on it
// wakes at once and no change is lost between reading and waiting:
// a waiter takes the channel first, then reads the store, then waits. It
// waits here for the API to take it as its own, fed by the store's
// commits; the reconciler does not use it.
type Hub struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{chans: make(map[string]chan struct{})}
}

// Changed returns a channel that is closed on the next change of id.
func (h *Hub) Changed(id string) <-chan struct{} {
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
func (h *Hub) Notify(ids ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		if ch, ok := h.chans[id]; ok {
			close(ch)
			delete(h.chans, id)
		}
	}
}
