package reconcile

import (
	"sync"
	"time"
)

// queue hands environment ids to workers. An id is queued at most once and
// processed by at most one worker at a time; an id added while it is being
// processed is processed again afterwards (the Kubernetes workqueue rule),
// so no change is missed and no environment is reconciled concurrently.
//
// Each queued id carries its cause, the request id of the API request
// whose change it reconciles, so that the audit events the reconciler
// writes for it name that request; "" when the work has no request behind
// it (a restart, a TTL).
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	queued     map[string]string // id -> cause
	processing map[string]bool
	later      map[string]*delayed // the pending delayed add of each id
	closed     bool
}

// delayed is an add waiting for its timer.
type delayed struct {
	at    time.Time
	timer *time.Timer
}

func newQueue() *queue {
	q := &queue{queued: map[string]string{}, processing: map[string]bool{}, later: map[string]*delayed{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues ids that are not queued already; a non-empty cause replaces
// the one an id was queued with, since the pass that follows reconciles the
// latest change.
func (q *queue) add(cause string, ids ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		q.addLocked(id, cause)
	}
	q.cond.Broadcast()
}

func (q *queue) addLocked(id, cause string) {
	if q.closed {
		return
	}
	old, queued := q.queued[id]
	if cause == "" {
		cause = old
	}
	q.queued[id] = cause
	if !queued && !q.processing[id] {
		q.items = append(q.items, id)
	}
}

// addAfter queues id once d has passed (a retry's backoff). An id has at
// most one delayed add: the earlier one wins, so repeated failures do not
// pile up timers, and an add in the meantime is not cancelled by it.
func (q *queue) addAfter(id, cause string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := time.Now().Add(d)
	if w, ok := q.later[id]; ok {
		if !w.at.After(at) {
			return
		}
		w.timer.Stop()
	}
	w := &delayed{at: at}
	w.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.later[id] != w {
			return // replaced by an earlier one, or the queue closed
		}
		delete(q.later, id)
		q.addLocked(id, cause)
		q.cond.Broadcast()
	})
	q.later[id] = w
}

// get blocks until an id is ready or the queue is closed (ok false).
func (q *queue) get() (id, cause string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", "", false
	}
	id = q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	cause = q.queued[id]
	delete(q.queued, id)
	q.processing[id] = true
	return id, cause, true
}

// done marks id processed, queueing it again if it was added meanwhile.
func (q *queue) done(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, id)
	if _, again := q.queued[id]; again && !q.closed {
		q.items = append(q.items, id)
		q.cond.Broadcast()
	}
}

// close wakes every worker, stops the delayed adds and makes get return
// false; what was queued is picked up by the next start.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for id, w := range q.later {
		w.timer.Stop()
		delete(q.later, id)
	}
	q.cond.Broadcast()
}

// len reports how many ids wait.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
