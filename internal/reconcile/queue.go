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
// Each queued id carries its cause, the API request whose change it
// reconciles, so that the audit events the reconciler writes for it name
// that request. Causes are ordered by when their request was queued, and
// the newest wins: a retry or follow-up of an older request never takes
// the place of a newer one, so a deletion is credited to the delete even
// when a retry of an earlier change fires after it.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	queued     map[string]cause
	processing map[string]bool
	later      map[string]*delayed // the pending delayed add of each id
	closed     bool
	seq        uint64 // orders causes; see add

	// afterFunc runs f once d has passed (time.AfterFunc; tests fire it
	// themselves).
	afterFunc func(d time.Duration, f func()) stopper
}

// cause is the API request behind queued work ("" when none is: a restart,
// a TTL) and seq, which orders it among the others queued.
type cause struct {
	requestID string
	seq       uint64
}

// replaces reports whether c should become the cause of an id queued with
// old: a request replaces no request, and a newer request an older one. An
// add with no request behind it does not erase the request still pending.
func (c cause) replaces(old cause) bool {
	return c.requestID != "" && (old.requestID == "" || c.seq > old.seq)
}

// item is one id handed to a worker.
type item struct {
	id    string
	cause cause
}

// delayed is an add waiting for its timer.
type delayed struct {
	at    time.Time
	cause cause
	timer stopper
}

type stopper interface{ Stop() bool }

func newQueue() *queue {
	q := &queue{
		queued: map[string]cause{}, processing: map[string]bool{}, later: map[string]*delayed{},
		afterFunc: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues ids because of the request requestID, a cause newer than any
// queued before.
func (q *queue) add(requestID string, ids ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	q.addLocked(cause{requestID: requestID, seq: q.seq}, ids...)
}

// addCause queues ids as follow-up work of a pass, under the pass's cause,
// which keeps its place in time.
func (q *queue) addCause(c cause, ids ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(c, ids...)
}

func (q *queue) addLocked(c cause, ids ...string) {
	if q.closed {
		return
	}
	for _, id := range ids {
		old, queued := q.queued[id]
		if queued && !c.replaces(old) {
			continue
		}
		q.queued[id] = c
		if !queued && !q.processing[id] {
			q.items = append(q.items, id)
		}
	}
	q.cond.Broadcast()
}

// addAfter queues id under c once d has passed (a retry's backoff). An id
// has at most one delayed add: the earliest time wins, so repeated
// failures do not pile up timers, and it carries the newest cause; an add
// in the meantime is not cancelled by it.
func (q *queue) addAfter(id string, c cause, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := time.Now().Add(d)
	if w, ok := q.later[id]; ok {
		if c.replaces(w.cause) {
			w.cause = c
		}
		if !w.at.After(at) {
			return
		}
		w.timer.Stop()
		c = w.cause
	}
	w := &delayed{at: at, cause: c}
	w.timer = q.afterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.later[id] != w {
			return // replaced by an earlier one, or the queue closed
		}
		delete(q.later, id)
		q.addLocked(w.cause, id)
	})
	q.later[id] = w
}

// get blocks until an id is ready or the queue is closed (ok false).
func (q *queue) get() (it item, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return item{}, false
	}
	id := q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	c := q.queued[id]
	delete(q.queued, id)
	q.processing[id] = true
	return item{id: id, cause: c}, true
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
