package reconcile

import "sync"

// queue hands environment ids to workers. An id is queued at most once and
// processed by at most one worker at a time; an id added while it is being
// processed is processed again afterwards (the Kubernetes workqueue rule),
// so no change is missed and no environment is reconciled concurrently.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	queued     map[string]bool
	processing map[string]bool
	closed     bool
}

func newQueue() *queue {
	q := &queue{queued: map[string]bool{}, processing: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues ids that are not queued already.
func (q *queue) add(ids ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	for _, id := range ids {
		if q.queued[id] {
			continue
		}
		q.queued[id] = true
		if !q.processing[id] {
			q.items = append(q.items, id)
		}
	}
	q.cond.Broadcast()
}

// get blocks until an id is ready or the queue is closed (ok false).
func (q *queue) get() (id string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	id = q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	delete(q.queued, id)
	q.processing[id] = true
	return id, true
}

// done marks id processed, queueing it again if it was added meanwhile.
func (q *queue) done(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, id)
	if q.queued[id] && !q.closed {
		q.items = append(q.items, id)
		q.cond.Broadcast()
	}
}

// close wakes every worker and makes get return false.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// len reports how many ids wait.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
