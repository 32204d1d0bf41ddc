package reconcile

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeTimers stands in for time.AfterFunc, so a test fires the delayed
// adds itself, at the moment it chooses.
type fakeTimers struct {
	mu      sync.Mutex
	pending []*fakeTimer
}

type fakeTimer struct {
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool {
	was := !t.stopped
	t.stopped = true
	return was
}

func withFakeTimers(q *queue) *fakeTimers {
	ft := &fakeTimers{}
	q.afterFunc = func(_ time.Duration, f func()) stopper {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		t := &fakeTimer{f: f}
		ft.pending = append(ft.pending, t)
		return t
	}
	return ft
}

// fire runs every delayed add that was not stopped, and reports how many.
func (ft *fakeTimers) fire(q *queue) int {
	ft.mu.Lock()
	pending := ft.pending
	ft.pending = nil
	ft.mu.Unlock()
	n := 0
	for _, t := range pending {
		q.mu.Lock()
		stopped := t.stopped
		q.mu.Unlock()
		if !stopped {
			t.f()
			n++
		}
	}
	return n
}

// mustGet takes the next item, which must be there already.
func mustGet(t *testing.T, q *queue) item {
	t.Helper()
	if q.len() == 0 {
		t.Fatal("nothing queued")
	}
	it, ok := q.get()
	if !ok {
		t.Fatal("queue closed")
	}
	return it
}

func TestQueue_NeverProcessesAnIDTwiceAtOnceAndKeepsLateAdds(t *testing.T) {
	q := newQueue()
	q.add("", "a", "b", "a")
	if q.len() != 2 {
		t.Fatalf("queued %d, want 2 (deduplicated)", q.len())
	}
	first := mustGet(t, q)
	q.add("", first.id) // changed while being processed
	other := mustGet(t, q)
	if other.id == first.id {
		t.Fatal("an id in process was handed out again")
	}
	q.done(other.id)
	q.done(first.id)
	if again := mustGet(t, q); again.id != first.id {
		t.Fatalf("the late add of %s was lost (got %q)", first.id, again.id)
	}
	q.close()
	if _, ok := q.get(); ok {
		t.Fatal("get after close")
	}
}

func TestQueue_DelayedAddKeepsTheEarliestTimeAndTheNewestCause(t *testing.T) {
	q := newQueue()
	ft := withFakeTimers(q)
	q.addAfter("a", cause{"req_1", 1}, time.Hour)
	q.addAfter("a", cause{"req_2", 2}, time.Millisecond) // earlier: replaces the timer
	q.addAfter("a", cause{"req_3", 3}, time.Hour)        // later: no new timer, but the newer cause
	if n := ft.fire(q); n != 1 {
		t.Fatalf("%d delayed adds fired, want 1", n)
	}
	if it := mustGet(t, q); it.id != "a" || it.cause.requestID != "req_3" {
		t.Fatalf("got %+v, want a under req_3", it)
	}
	q.done("a")
	q.addAfter("b", cause{}, time.Millisecond)
	q.close()
	if _, ok := q.get(); ok {
		t.Fatal("get after close")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.later) != 0 {
		t.Fatal("close left delayed adds behind")
	}
}

// The flake this guards against: a failing apply under req_policy queued a
// retry; the environment was deleted (req_delete); the retry fired before
// the teardown and credited the removal to req_policy.
func TestQueue_ARetryOfAnOlderRequestNeverReplacesTheCauseOfANewerOne(t *testing.T) {
	q := newQueue()
	ft := withFakeTimers(q)
	q.add("req_policy", "a")
	failing := mustGet(t, q)
	q.addAfter("a", failing.cause, time.Millisecond) // the pass failed: retry later
	q.done("a")
	q.add("req_delete", "a")
	ft.fire(q)
	if it := mustGet(t, q); it.cause.requestID != "req_delete" {
		t.Fatalf("after a retry of an older request fired: cause %q, want req_delete", it.cause.requestID)
	}
}

func TestQueue_FollowUpWorkOfAnOlderRequestNeverReplacesTheCauseOfANewerOne(t *testing.T) {
	q := newQueue()
	q.add("req_create", "a")
	pass := mustGet(t, q)
	q.add("req_delete", "a")    // arrives while the create's pass runs
	q.addCause(pass.cause, "a") // the pass queues its next step
	q.addCause(pass.cause, "b") // and a peer it affected
	q.done("a")
	got := map[string]string{}
	for q.len() > 0 {
		it := mustGet(t, q)
		got[it.id] = it.cause.requestID
		q.done(it.id)
	}
	if got["a"] != "req_delete" || got["b"] != "req_create" {
		t.Fatalf("causes %v, want a under req_delete and b under req_create", got)
	}
}

func TestQueue_AnAddWithNoRequestKeepsThePendingRequest(t *testing.T) {
	q := newQueue()
	q.add("", "a") // a restart
	q.add("req_1", "a")
	q.add("", "a") // a TTL wake-up
	if it := mustGet(t, q); it.cause.requestID != "req_1" {
		t.Fatalf("cause %q, want req_1", it.cause.requestID)
	}
}

// drain plays a worker until the queue is empty: it sends the ids in peers
// to the fan-out lane the first time it sees them, as the reconciler does
// for ready environments whose rules someone else's change re-rendered,
// and returns the ids it processed, in order.
func drain(t *testing.T, q *queue, peers ...string) []string {
	t.Helper()
	var order []string
	for q.len() > 0 {
		it := mustGet(t, q)
		if !it.sorted && slices.Contains(peers, it.id) {
			q.fanOut(it)
			continue
		}
		order = append(order, it.id)
		q.done(it.id)
	}
	return order
}

func TestQueue_AnEnvironmentsOwnWorkGoesBeforeTheFanOutItsCreationCaused(t *testing.T) {
	q := newQueue()
	// The API queues the peers a creation re-renders, then the new one.
	q.add("req_create", "db1", "db2", "db3", "web")
	got := drain(t, q, "db1", "db2", "db3")
	want := []string{"web", "db1", "db2", "db3"}
	if !slices.Equal(got, want) {
		t.Fatalf("processed %v, want %v", got, want)
	}
}

func TestQueue_OwnWorkQueuedWhileTheFanOutWaitsOvertakesIt(t *testing.T) {
	q := newQueue()
	q.add("req_policy", "db1", "db2")
	for range 2 {
		q.fanOut(mustGet(t, q))
	}
	q.add("req_create", "web")
	if it := mustGet(t, q); it.id != "web" || it.sorted {
		t.Fatalf("got %+v, want web, before the waiting fan-out", it)
	}
	q.done("web")
	for _, want := range []string{"db1", "db2"} {
		if it := mustGet(t, q); it.id != want || !it.sorted || it.cause.requestID != "req_policy" {
			t.Fatalf("got %+v, want %s from the fan-out lane under req_policy", it, want)
		}
		q.done(want)
	}
}

func TestQueue_TheFanOutIsNotStarvedByAStreamOfOwnWork(t *testing.T) {
	q := newQueue()
	q.add("req_policy", "db")
	q.fanOut(mustGet(t, q))
	for i := range 3 * fanoutEvery {
		q.add("req_create", fmt.Sprintf("web%d", i))
	}
	for pass := range fanoutEvery + 1 {
		it := mustGet(t, q)
		q.done(it.id)
		if it.id == "db" {
			return
		}
		if pass == fanoutEvery {
			t.Fatalf("the fan-out waited more than %d passes", fanoutEvery)
		}
	}
}

func TestQueue_AnAddToAnIDInTheFanOutSortsItAgainUnderTheNewerCause(t *testing.T) {
	q := newQueue()
	q.add("req_policy", "db1", "db2")
	for range 2 {
		q.fanOut(mustGet(t, q))
	}
	q.addCause(cause{"req_other", 9}, "db1") // a follow-up re-render: db1 keeps its place
	q.add("req_delete", "db2")               // its own change: it must not wait behind db1
	it := mustGet(t, q)
	if it.id != "db2" || it.sorted || it.cause.requestID != "req_delete" {
		t.Fatalf("got %+v, want db2 to be sorted again under req_delete", it)
	}
	q.done("db2")
	if it := mustGet(t, q); it.id != "db1" || !it.sorted || it.cause.requestID != "req_other" {
		t.Fatalf("got %+v, want db1 still in the fan-out lane, under the newer req_other", it)
	}
	q.done("db1")
	if n := q.len(); n != 0 {
		t.Fatalf("%d ids still queued; db2's old place in the fan-out lane must be stale", n)
	}
}

func TestQueue_AnIDAddedWhileBeingSortedIsSortedAgain(t *testing.T) {
	q := newQueue()
	ft := withFakeTimers(q)
	q.add("req_policy", "db")
	it := mustGet(t, q)
	q.add("req_patch", "db") // an update of its own, while it is looked at
	q.fanOut(it)
	again := mustGet(t, q)
	if again.sorted || again.cause.requestID != "req_patch" {
		t.Fatalf("got %+v, want db unsorted under req_patch", again)
	}
	// A retry of a fan-out pass is sorted like any other add.
	q.addAfter("db", again.cause, time.Millisecond)
	q.done("db")
	ft.fire(q)
	if retry := mustGet(t, q); retry.sorted || retry.id != "db" {
		t.Fatalf("retry: got %+v, want db unsorted", retry)
	}
}

func TestQueue_TheFanOutLeavesAWorkerFreeForOwnWork(t *testing.T) {
	q := newQueue()
	q.fanoutLimit = 1
	q.add("req_policy", "db1", "db2")
	for range 2 {
		q.fanOut(mustGet(t, q))
	}
	first := mustGet(t, q)
	if !first.sorted {
		t.Fatalf("got %+v, want a fan-out pass", first)
	}
	// db2 waits while db1's pass runs; own work does not.
	q.add("req_create", "web")
	if it := mustGet(t, q); it.id != "web" {
		t.Fatalf("got %+v while a fan-out pass runs at the limit, want web", it)
	}
	q.done("web")
	q.done(first.id)
	if it := mustGet(t, q); it.id != "db2" || !it.sorted {
		t.Fatalf("got %+v, want db2 once db1's pass ended", it)
	}
}
