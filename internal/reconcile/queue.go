package reconcile

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
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
	queued     map[string]*entry
	processing map[string]lane     // id -> the lane it was taken from
	later      map[string]*delayed // the pending delayed add of each id
	closed     bool
	seq        uint64 // orders causes; see add

	lanes   [2][]slot // ids waiting, first and fan-out; see get
	waiting [2]int    // how many slots of each lane are live
	tickets uint64    // numbers the slots, so stale ones are skipped
	// sinceFanout counts passes taken from the first lane while the
	// fan-out lane was waiting.
	sinceFanout int
	// fanoutBusy counts fan-out passes under way; at most fanoutLimit run
	// at once, so a worker is always free for work of an environment's
	// own (0: no limit).
	fanoutBusy, fanoutLimit int

	// clock times the delayed adds: afterFunc runs f once d has passed on
	// it (clock.AfterFunc; tests fire it themselves).
	clock     clockwork.Clock
	afterFunc func(d time.Duration, f func()) stopper
}

// fanoutEvery bounds how many passes the first lane takes while the
// fan-out lane waits: the fan-out gets at least one pass in fanoutEvery+1,
// so a stream of creates cannot starve it.
const fanoutEvery = 4

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
	// sorted says it comes from the fan-out lane: the worker has seen that
	// it only needs its rules applied, and processes it whatever it needs.
	sorted bool
}

// The lanes. Every add enters the first lane, unsorted. A worker that
// takes an id from there reads the environment; if all it needs is
// re-rendered rules applied (a ready environment affected by someone
// else's change), the worker moves it to the fan-out lane with fanOut
// instead of processing it. So an environment being created, changed or
// deleted never waits behind the re-applies its own creation caused.
type lane int

const (
	laneFirst lane = iota
	laneFanout
	// laneNone: queued while it is being processed; done puts it in line.
	laneNone
)

type entry struct {
	cause  cause
	lane   lane
	ticket uint64 // of its live slot
}

// slot is a place in a lane; an id that moved leaves its old slot behind,
// stale, to be skipped.
type slot struct {
	id     string
	ticket uint64
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
		queued: map[string]*entry{}, processing: map[string]lane{}, later: map[string]*delayed{},
		clock: clockwork.NewRealClock(),
	}
	q.afterFunc = func(d time.Duration, f func()) stopper { return q.clock.AfterFunc(d, f) }
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add queues ids because of the request requestID, a cause newer than any
// queued before.
func (q *queue) add(requestID string, ids ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	q.addLocked(cause{requestID: requestID, seq: q.seq}, true, ids...)
}

// addCause queues ids as follow-up work of a pass, under the pass's cause,
// which keeps its place in time.
func (q *queue) addCause(c cause, ids ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(c, false, ids...)
}

// addLocked queues ids under c. With resort, an id waiting in the fan-out
// lane is sorted again: add's request (a delete, say) or TTL may have given
// it work of its own. Follow-ups and retries need not: they re-render rules
// or retry a step, and any work of its own arrives through add.
func (q *queue) addLocked(c cause, resort bool, ids ...string) {
	if q.closed {
		return
	}
	for _, id := range ids {
		e := q.queued[id]
		if e == nil {
			e = &entry{cause: c, lane: laneNone}
			q.queued[id] = e
			if _, busy := q.processing[id]; !busy {
				q.push(id, e, laneFirst)
			}
			continue
		}
		if c.replaces(e.cause) {
			e.cause = c
		}
		if resort && e.lane == laneFanout {
			q.push(id, e, laneFirst)
		}
	}
	q.cond.Broadcast()
}

// push puts e's id at the end of lane l, leaving any slot it had stale.
func (q *queue) push(id string, e *entry, l lane) {
	if e.lane != laneNone {
		q.waiting[e.lane]--
	}
	q.tickets++
	e.lane, e.ticket = l, q.tickets
	q.waiting[l]++
	q.lanes[l] = append(q.lanes[l], slot{id: id, ticket: e.ticket})
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
	at := q.clock.Now().Add(d)
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
		q.addLocked(w.cause, false, id)
	})
	q.later[id] = w
}

// get blocks until an id is ready or the queue is closed (ok false). It
// serves the first lane, and the fan-out lane when the first is empty or
// has had fanoutEvery passes in a row while the fan-out waited, as long as
// fewer than fanoutLimit fan-out passes are under way.
func (q *queue) get() (it item, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.waiting[laneFirst] == 0 && !q.fanoutOpen() && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return item{}, false
	}
	l := laneFirst
	switch {
	case !q.fanoutOpen():
		if q.waiting[laneFanout] == 0 {
			q.sinceFanout = 0
		}
	case q.waiting[laneFirst] == 0 || q.sinceFanout >= fanoutEvery:
		l = laneFanout
		q.sinceFanout = 0
		q.fanoutBusy++
	default:
		q.sinceFanout++
	}
	id, e := q.pop(l)
	delete(q.queued, id)
	q.processing[id] = l
	return item{id: id, cause: e.cause, sorted: l == laneFanout}, true
}

// fanoutOpen reports whether a fan-out pass may start now.
func (q *queue) fanoutOpen() bool {
	return q.waiting[laneFanout] > 0 && (q.fanoutLimit == 0 || q.fanoutBusy < q.fanoutLimit)
}

// pop removes the first live slot of lane l, which has one.
func (q *queue) pop(l lane) (string, *entry) {
	for {
		s := q.lanes[l][0]
		q.lanes[l][0] = slot{}
		q.lanes[l] = q.lanes[l][1:]
		if e := q.queued[s.id]; e != nil && e.ticket == s.ticket && e.lane == l {
			q.waiting[l]--
			e.lane = laneNone
			return s.id, e
		}
	}
}

// done marks id processed, queueing it again if it was added meanwhile.
func (q *queue) done(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.processing[id] == laneFanout {
		q.fanoutBusy--
		q.cond.Broadcast()
	}
	delete(q.processing, id)
	if e := q.queued[id]; e != nil && !q.closed {
		q.push(id, e, laneFirst)
		q.cond.Broadcast()
	}
}

// fanOut ends a worker's look at it, which only needs re-rendered rules
// applied: it waits in the fan-out lane, with its cause, and the look does
// not count as a pass. If it was added again meanwhile, it is sorted
// again.
func (q *queue) fanOut(it item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, it.id)
	if q.closed {
		return
	}
	if q.sinceFanout > 0 {
		q.sinceFanout--
	}
	e := q.queued[it.id]
	if e == nil {
		e = &entry{cause: it.cause, lane: laneNone}
		q.queued[it.id] = e
		q.push(it.id, e, laneFanout)
	} else {
		if it.cause.replaces(e.cause) {
			e.cause = it.cause
		}
		q.push(it.id, e, laneFirst)
	}
	q.cond.Broadcast()
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
	return q.waiting[laneFirst] + q.waiting[laneFanout]
}
