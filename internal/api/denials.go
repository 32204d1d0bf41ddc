package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Refused requests are audited without the request waiting for the store,
// and without one caller deciding how much the trail grows:
//
//   - The first refusal of a key (source address, token, action, status
//     and reason) in a minute is appended alone, as every refusal was
//     before; the others of that minute are counted, and when the minute
//     closes (or at shutdown) one aggregate event carries the count.
//   - Appending happens on a goroutine of its own, so a refused request
//     costs the same whatever its reason: an out-of-scope 404 and a
//     missing-object 404 are indistinguishable, in time as in content.
//   - Memory is bounded: at most maxDenialWindows keys a minute (more
//     sources share one key whose source is overflowSource) and at most
//     maxPendingDenials events waiting to be appended; past that, first
//     refusals are counted instead, and minutes stay open until the
//     backlog drains. Nothing counted is dropped.
//
// A graceful stop (stop) closes every window and appends it. A kill -9
// loses what is in memory: the open minute's counts and the events not yet
// appended (those of the last few milliseconds, or more while the store
// cannot write).
const (
	maxDenialWindows  = 512
	maxPendingDenials = 4096
	// overflowSource is the source of the key that counts refusals of
	// sources beyond maxDenialWindows in one minute.
	overflowSource = "*"
	// AggregateSuffix ends the action of an aggregate event:
	// auth.denied.aggregate counts auth.denied refusals.
	AggregateSuffix = ".aggregate"
	// denialRetry spaces appends while the store refuses them.
	denialRetry = time.Second
)

// Actions of refused requests.
const (
	actionDenied   = "auth.denied"
	actionNotFound = "request.not_found"
)

type denialKey struct {
	ip, tokenID, action, reason string
	status                      int
}

// denialWindow counts the refusals of one key after the one appended alone.
type denialWindow struct {
	event       apiv1.AuditEvent // the first refusal: what the aggregate repeats
	count       int
	first, last time.Time
	lastRequest string
}

type denials struct {
	// control builds the aggregate events and appends every event; its
	// clock draws the minutes. The goroutine's wake-ups stay on real
	// time: they only pace appends and retries, and a test's clock that
	// never moves must not stop them.
	control *control.Service
	log     *slog.Logger

	mu      sync.Mutex
	minute  time.Time // the minute the windows count
	windows map[denialKey]*denialWindow
	pending []apiv1.AuditEvent
	// started and finished count append attempts; attempted is closed
	// and replaced after each one, so that sync can wait for the first
	// attempt started after it was called.
	started, finished uint64
	attempted         chan struct{}

	wake chan struct{}
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

func newDenials(ctl *control.Service, log *slog.Logger) *denials {
	d := &denials{
		control: ctl, log: log,
		windows:   map[denialKey]*denialWindow{},
		attempted: make(chan struct{}),
		wake:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go d.run()
	return d
}

// record audits one refusal: appended alone when it is the first of its
// key this minute, counted otherwise; it reports which. It never waits
// for the store.
func (d *denials) record(ev apiv1.AuditEvent) (alone bool) {
	key := denialKey{ip: ev.Source.IP, tokenID: ev.Actor.TokenID, action: ev.Action, reason: ev.Reason, status: ev.StatusCode}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeLocked(ev.Time, false)
	w, ok := d.windows[key]
	if !ok && len(d.windows) >= maxDenialWindows {
		key.ip = overflowSource
		w, ok = d.windows[key]
	}
	if !ok {
		w = &denialWindow{event: ev}
		if key.ip == overflowSource {
			// Many sources share it: none of them speaks for the rest.
			w.event.Source = apiv1.Source{IP: overflowSource}
			w.event.Resource.ID = ""
		}
		d.windows[key] = w
		if key.ip != overflowSource && len(d.pending) < maxPendingDenials {
			d.queueLocked(ev)
			return true
		}
	}
	w.count++
	if w.count == 1 {
		w.first = ev.Time
	}
	w.last, w.lastRequest = ev.Time, ev.RequestID
	return false
}

// closeLocked turns the open windows into aggregate events once their
// minute is over (all of them when force), as long as the backlog has
// room; otherwise they stay open and keep counting.
func (d *denials) closeLocked(now time.Time, force bool) {
	minute := now.Truncate(time.Minute)
	if !force && !minute.After(d.minute) {
		return
	}
	if !force && len(d.pending)+len(d.windows) > maxPendingDenials {
		return
	}
	d.minute = minute
	open := make([]*denialWindow, 0, len(d.windows))
	for _, w := range d.windows {
		if w.count > 0 {
			open = append(open, w)
		}
	}
	slices.SortFunc(open, func(a, b *denialWindow) int { return a.first.Compare(b.first) })
	for _, w := range open {
		d.queueLocked(d.aggregate(w))
	}
	clear(d.windows)
}

// aggregate is the event that counts w's refusals after its first: the
// first's fields, named by the last refused request.
func (d *denials) aggregate(w *denialWindow) apiv1.AuditEvent {
	first := w.event
	c := control.Call{RequestID: w.lastRequest, Actor: first.Actor, Source: first.Source, Status: first.StatusCode}
	ev := d.control.Event(c, first.Action+AggregateSuffix, first.Resource, first.ProjectID, first.Outcome)
	ev.Reason = first.Reason
	ev.Changes = &apiv1.Changes{After: apiv1.DenialAggregate{Count: w.count, WindowStart: w.first.UTC(), WindowEnd: w.last.UTC()}}
	return ev
}

// now is the time of the application layer's clock.
func (d *denials) now() time.Time { return d.control.Clock().Now() }

func (d *denials) queueLocked(ev apiv1.AuditEvent) {
	d.pending = append(d.pending, ev)
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *denials) run() {
	defer close(d.done)
	timer := time.NewTimer(denialRetry)
	defer timer.Stop()
	failing := false
	for {
		// While the store refuses appends, retry on the timer only: a flood
		// of refusals must not become a flood of failing writes.
		wake := d.wake
		if failing {
			wake = nil
		}
		select {
		case <-wake:
		case <-timer.C:
		case <-d.quit:
			d.mu.Lock()
			d.closeLocked(d.now(), true)
			d.mu.Unlock()
			d.append()
			return
		}
		d.mu.Lock()
		d.closeLocked(d.now(), false)
		d.mu.Unlock()
		failing = !d.append()
		// Wake for the end of the minute even when nothing else happens;
		// with a test's clock that never moves, every denialRetry.
		wait := d.untilNextMinute()
		if failing {
			wait = denialRetry
		}
		timer.Reset(wait)
	}
}

func (d *denials) untilNextMinute() time.Duration {
	now := d.now()
	next := now.Truncate(time.Minute).Add(time.Minute)
	return min(max(next.Sub(now), denialRetry), time.Minute)
}

// append writes the backlog in one transaction. A full disk makes the
// store release its reserve, so a second attempt right away has room;
// what still fails stays queued for the next round. It reports whether
// the backlog was appended.
func (d *denials) append() bool {
	d.mu.Lock()
	batch := d.pending
	d.pending = nil
	d.started++
	d.mu.Unlock()

	var err error
	if len(batch) > 0 {
		err = d.control.AppendRefusals(context.Background(), batch)
		if errors.Is(err, store.ErrFull) {
			err = d.control.AppendRefusals(context.Background(), batch)
		}
	}

	d.mu.Lock()
	if err != nil {
		d.pending = append(batch, d.pending...)
		d.log.Error("audit refused requests", "error", err.Error(), "waiting", len(d.pending))
	}
	d.finished++
	close(d.attempted)
	d.attempted = make(chan struct{})
	d.mu.Unlock()
	return err == nil
}

// sync waits for an append attempt that starts after it is called, which
// covers every refusal recorded before the call (not the counts of open
// windows): an audit read then sees the refusals it follows.
func (d *denials) sync(ctx context.Context) error {
	d.mu.Lock()
	target := d.started + 1
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	for {
		d.mu.Lock()
		finished, ch := d.finished, d.attempted
		d.mu.Unlock()
		if finished >= target {
			return nil
		}
		select {
		case <-ch:
		case <-d.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// flush closes every window, open minute or not, and appends them with
// the rest of the backlog; it fails when something could not be appended.
func (d *denials) flush(ctx context.Context) error {
	d.mu.Lock()
	d.closeLocked(d.now(), true)
	d.mu.Unlock()
	if err := d.sync(ctx); err != nil {
		return err
	}
	return d.backlogErr()
}

// stop closes every window, appends everything and ends the goroutine.
func (d *denials) stop(ctx context.Context) error {
	d.once.Do(func() { close(d.quit) })
	select {
	case <-d.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return d.backlogErr()
}

// backlog is how many events wait to be appended (for metrics).
func (d *denials) backlog() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return float64(len(d.pending))
}

func (d *denials) backlogErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.pending); n > 0 {
		return fmt.Errorf("%d audit events of refused requests could not be appended", n)
	}
	return nil
}

// refused hands the audit event of a refused request to the aggregator,
// with every request-derived field cut to MaxFieldBytes.
func (a *API) refused(r *http.Request, action, outcome string, status int, reason string) {
	info := requestInfoFrom(r.Context())
	ev := a.control.Event(a.call(r, status), action, apiv1.ResourceRef{Type: string(info.perm.Resource), ID: truncateField(idFromPath(r))}, "", outcome)
	ev.Reason = truncateField(reason)
	msg := "request denied"
	if action == actionNotFound {
		msg = "object not found"
	}
	a.recordRefusal(r, ev, msg)
}

// recordRefusal hands ev, the audit event of a refused request, to the
// aggregator, and logs msg with it: like the trail, the log says it once
// a window, the rest at debug.
func (a *API) recordRefusal(r *http.Request, ev apiv1.AuditEvent, msg string) {
	level := slog.LevelWarn
	if !a.denials.record(ev) {
		level = slog.LevelDebug
	}
	requestInfoFrom(r.Context()).logger.Log(r.Context(), level, msg, "status", ev.StatusCode, "reason", ev.Reason)
}
