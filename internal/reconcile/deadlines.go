package reconcile

import (
	"container/heap"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// deadlines wakes the reconciler when the earliest TTL passes: one timer,
// always set to the next deadline, instead of a polling loop.
type deadlines struct {
	mu    sync.Mutex
	h     deadlineHeap
	at    map[string]time.Time // the current deadline of each id; stale heap entries are skipped
	timer clockwork.Timer
	wake  chan struct{}
	clock clockwork.Clock
}

func newDeadlines(clock clockwork.Clock) *deadlines {
	d := &deadlines{at: map[string]time.Time{}, wake: make(chan struct{}, 1), clock: clock}
	d.timer = clock.AfterFunc(time.Hour, d.fire)
	d.timer.Stop()
	return d
}

// set makes id due at t; a zero t removes its deadline.
func (d *deadlines) set(id string, t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.IsZero() {
		delete(d.at, id)
		return
	}
	if old, ok := d.at[id]; ok && old.Equal(t) {
		return
	}
	d.at[id] = t
	heap.Push(&d.h, deadline{id: id, at: t})
	d.rearm()
}

// due removes and returns every id whose deadline has passed.
func (d *deadlines) due() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now()
	var ids []string
	for d.h.Len() > 0 && !d.h[0].at.After(now) {
		e := heap.Pop(&d.h).(deadline)
		if cur, ok := d.at[e.id]; ok && cur.Equal(e.at) {
			delete(d.at, e.id)
			ids = append(ids, e.id)
		}
	}
	d.rearm()
	return ids
}

// rearm sets the timer to the earliest live deadline; d.mu is held.
func (d *deadlines) rearm() {
	for d.h.Len() > 0 {
		top := d.h[0]
		if cur, ok := d.at[top.id]; ok && cur.Equal(top.at) {
			d.timer.Reset(max(top.at.Sub(d.clock.Now()), 0))
			return
		}
		heap.Pop(&d.h)
	}
	d.timer.Stop()
}

func (d *deadlines) fire() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *deadlines) stop() { d.timer.Stop() }

type deadline struct {
	id string
	at time.Time
}

type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
