package siem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Tunables of the delivery loop.
const (
	// batchSize is how many records one send carries at most.
	batchSize = 512
	// linger gathers the records of a burst into one batch: a loop woken
	// from idle waits this long before it reads. A SIEM can wait a tenth
	// of a second; the API's writers should not share the CPU with a
	// read, an encoding and a send per event.
	linger = 100 * time.Millisecond
	// persistEvery bounds how often a sink's cursor is written: each
	// write is a store transaction beside the API's, and a cursor a
	// second old only costs duplicates after a crash.
	persistEvery = time.Second
	// poll reads the sources even without a wake-up (records another
	// process committed).
	poll = 5 * time.Second
	// lagCheckEvery bounds how often the lag is measured.
	lagCheckEvery = 250 * time.Millisecond
	minBackoff    = 100 * time.Millisecond
	maxBackoff    = 30 * time.Second
)

// Notice is an audit event the exporter asks for about a sink: it fell
// behind (siem.lagging), caught up (siem.caught_up), or skipped records
// (siem.gap).
type Notice struct {
	Action  string
	Sink    string
	Outcome string // apiv1.Outcome*
	Reason  string
}

// Audit actions of notices.
const (
	ActionLagging  = "siem.lagging"
	ActionCaughtUp = "siem.caught_up"
	ActionGap      = "siem.gap"
)

// Options configure an Exporter.
type Options struct {
	// Store holds the sinks' cursors; its commits wake the loops
	// (Committed).
	Store store.Store
	// Sources by name (SourceAudit, SourceFlows): a sink follows those
	// its events= names. A sink naming a source not given is refused.
	Sources map[string]Source
	Sinks   []Sink
	Logger  *slog.Logger
	// Registry receives the isolationd_siem_* series; nil: none.
	Registry prometheus.Registerer
	// Notice appends the audit event of a notice; nil: notices are only
	// logged.
	Notice func(context.Context, Notice) error
}

// Exporter delivers each source to each sink in order, at least once,
// from a durable cursor per sink and source. Each sink has a goroutine of
// its own: a slow or dead sink falls behind alone, and the API's writes
// only ever wake it (Committed never blocks).
type Exporter struct {
	opts    Options
	tail    *tail
	log     *slog.Logger
	runners []*runner
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New checks the sinks against the sources and prepares their loops;
// Start starts them.
func New(opts Options) (*Exporter, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{opts: opts, log: opts.Logger, tail: &tail{}}
	sources := map[string]Source{}
	for name, src := range opts.Sources {
		if name == SourceAudit {
			src = tailedSource{Source: src, tail: e.tail}
		}
		sources[name] = src
	}
	for _, s := range opts.Sinks {
		format, err := FormatterFor(s.Format)
		if err != nil {
			return nil, fmt.Errorf("--siem %s: %w", s.Name, err)
		}
		r := &runner{sink: s, format: format, tr: newTransport(s), wake: make(chan struct{}, 1), log: opts.Logger.With("siem_sink", s.Name), e: e}
		for _, want := range []struct {
			on         bool
			name       string
			deniedOnly bool
		}{{s.Audit, SourceAudit, s.AuditDenialsOnly}, {s.Flows, SourceFlows, s.FlowDenialsOnly}} {
			if !want.on {
				continue
			}
			src, ok := sources[want.name]
			if !ok && want.deniedOnly {
				continue // events=denials: the refusals of the sources there are
			}
			if !ok {
				return nil, fmt.Errorf("--siem %s: events=%s: this server has no %s to export", s.Name, want.name, want.name)
			}
			r.streams = append(r.streams, &stream{src: src, deniedOnly: want.deniedOnly})
		}
		e.runners = append(e.runners, r)
	}
	if opts.Registry != nil && len(e.runners) > 0 {
		if err := opts.Registry.Register(&collector{e: e}); err != nil {
			return nil, fmt.Errorf("siem: metrics: %w", err)
		}
	}
	return e, nil
}

// Start loads every sink's cursors (a sink met for the first time starts
// at the head, or at the oldest record with from=oldest, and that start
// is stored at once) and starts the loops.
func (e *Exporter) Start(ctx context.Context) error {
	for _, r := range e.runners {
		if err := r.load(ctx, e.opts.Store); err != nil {
			return err
		}
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	for _, r := range e.runners {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			r.run(loopCtx)
		}()
	}
	return nil
}

// Committed keeps the commit's audit events for the sinks to read and
// wakes every loop; it never blocks, so a commit costs the writer next to
// nothing whatever the sinks do.
func (e *Exporter) Committed(c store.Commit) {
	if len(e.runners) == 0 {
		return
	}
	if len(c.Events) > 0 {
		e.tail.add(c.Events)
	}
	for _, r := range e.runners {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Stop stops the loops, each storing its cursor, and waits for them (or
// for ctx).
func (e *Exporter) Stop(ctx context.Context) error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("siem: sinks still stopping: %w", ctx.Err())
	}
}

// SinkStatus is how a sink is doing, for /readyz.
type SinkStatus struct {
	Name string `json:"name"`
	// Lag is how many records the sink has not received yet.
	Lag int64 `json:"lag_events"`
	// Lagging: it has stayed behind past its lag_alert threshold.
	Lagging bool `json:"lagging"`
	// Error is why the last send failed, while it fails.
	Error string `json:"error,omitempty"`
	// Rate is the records per second it received lately.
	Rate float64 `json:"rate_events_per_second"`
	// Gaps counts records skipped (retention exceeded, or pruned before
	// delivery).
	Gaps int64 `json:"gap_events,omitempty"`
}

// Status measures every sink.
func (e *Exporter) Status(ctx context.Context) []SinkStatus {
	out := make([]SinkStatus, 0, len(e.runners))
	for _, r := range e.runners {
		out = append(out, r.status(ctx))
	}
	return out
}

// stream is one source as one sink follows it.
type stream struct {
	src        Source
	deniedOnly bool
	// sent is the last position written to the sink, durable the last
	// it has received (as far as the transport can tell) and saved the
	// last stored as the cursor. saved <= durable <= sent.
	sent, durable, saved atomic.Int64
	// target is the head seen at targetAt, which the sink must reach
	// within lag_alert not to be lagging.
	target   int64
	targetAt time.Time
}

// mark is a send of a stream transport waiting to settle.
type mark struct {
	at  time.Time
	st  *stream
	pos int64
}

type runner struct {
	e       *Exporter
	sink    Sink
	format  Formatter
	tr      transport
	streams []*stream
	wake    chan struct{}
	log     *slog.Logger

	pending []mark

	lagging   atomic.Bool
	lastErr   atomic.Pointer[string]
	delivered atomic.Int64
	failures  atomic.Int64
	gaps      atomic.Int64
	rate      atomic.Uint64 // float64 bits
	lastSaved time.Time
	lastCheck time.Time
	rateFrom  time.Time
	rateBase  int64
}

func (r *runner) load(ctx context.Context, st store.Store) error {
	var fresh []*stream
	for _, s := range r.streams {
		pos, found, err := st.GetSIEMCursor(ctx, r.sink.Name, s.src.Name())
		if err != nil {
			return fmt.Errorf("siem: sink %s: %w", r.sink.Name, err)
		}
		if !found {
			if !r.sink.FromOldest {
				if pos, err = s.src.Head(ctx); err != nil {
					return fmt.Errorf("siem: sink %s: %w", r.sink.Name, err)
				}
			}
			fresh = append(fresh, s)
		}
		s.sent.Store(pos)
		s.durable.Store(pos)
		s.saved.Store(pos)
		s.target, s.targetAt = pos, time.Now()
	}
	if len(fresh) == 0 {
		return nil
	}
	return st.Update(ctx, func(tx store.Tx) error {
		for _, s := range fresh {
			if err := tx.PutSIEMCursor(ctx, r.sink.Name, s.src.Name(), s.durable.Load()); err != nil {
				return err
			}
		}
		return nil
	})
}

func (r *runner) run(ctx context.Context) {
	defer r.tr.close()
	defer r.save(context.Background(), true)
	backoff := minBackoff
	r.rateFrom = time.Now()
	for ctx.Err() == nil {
		now := time.Now()
		if !r.settle(now) {
			r.failed(ctx, errors.New("the receiver closed the connection"))
		}
		r.save(ctx, false)
		if now.Sub(r.lastCheck) >= lagCheckEvery {
			r.checkLag(ctx, now)
		}
		progressed, err := r.step(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff
			var ra *retryAfter
			if errors.As(err, &ra) {
				wait = ra.wait
			} else {
				backoff = min(backoff*2, maxBackoff)
			}
			r.failed(ctx, err)
			r.idle(ctx, wait, false)
			continue
		}
		if r.lastErr.Load() != nil {
			r.lastErr.Store(nil)
			r.log.Info("SIEM sink receiving again")
		}
		backoff = minBackoff
		if progressed {
			continue
		}
		r.idle(ctx, r.nextDeadline(now), true)
	}
}

// failed forgets what was written and not yet settled: it is sent again
// from the cursor, so the receiver may get some records twice, never
// none.
func (r *runner) failed(_ context.Context, err error) {
	r.failures.Add(1)
	msg := err.Error()
	if prev := r.lastErr.Swap(&msg); prev == nil {
		r.log.Warn("SIEM sink unreachable: retrying, resending from its cursor", "error", msg)
	}
	r.tr.close()
	r.pending = r.pending[:0]
	for _, s := range r.streams {
		s.sent.Store(s.durable.Load())
	}
}

// nextDeadline is how long an idle loop may wait: until the next mark
// settles, the dirty cursor is due, or the next poll.
func (r *runner) nextDeadline(now time.Time) time.Duration {
	d := poll
	if len(r.pending) > 0 {
		d = min(d, r.pending[0].at.Add(r.sink.Settle).Sub(now))
	}
	for _, s := range r.streams {
		if s.durable.Load() != s.saved.Load() {
			d = min(d, r.lastSaved.Add(persistEvery).Sub(now))
		}
		if s.durable.Load() != s.target || r.lagging.Load() {
			d = min(d, lagCheckEvery)
		}
	}
	return max(d, time.Millisecond)
}

// idle waits for d, a wake-up (then lingers), the connection breaking, or
// the end.
func (r *runner) idle(ctx context.Context, d time.Duration, wakeable bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake chan struct{}
	if wakeable {
		wake = r.wake
	}
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-r.tr.broken():
	case <-wake:
		t.Reset(linger)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// settle moves durable up to the marks older than the settle time, and
// reports false when the connection they were written on broke.
func (r *runner) settle(now time.Time) bool {
	select {
	case <-r.tr.broken():
		if len(r.pending) > 0 {
			return false
		}
		// An idle connection the receiver closed loses nothing.
		r.tr.close()
		return true
	default:
	}
	n := 0
	for _, m := range r.pending {
		if now.Sub(m.at) < r.sink.Settle {
			break
		}
		r.received(m.st, m.pos)
		n++
	}
	r.pending = append(r.pending[:0], r.pending[n:]...)
	return true
}

func (r *runner) received(s *stream, pos int64) {
	if prev := s.durable.Load(); pos > prev {
		s.durable.Store(pos)
		r.delivered.Add(pos - prev)
	}
}

// step sends one batch of each stream that has records after what it
// sent; progressed says whether any had.
func (r *runner) step(ctx context.Context) (progressed bool, err error) {
	for _, s := range r.streams {
		after := s.sent.Load()
		recs, err := s.src.Read(ctx, after, batchSize)
		if err != nil {
			return progressed, fmt.Errorf("read %s: %w", s.src.Name(), err)
		}
		if len(recs) == 0 {
			continue
		}
		progressed = true
		if first := recs[0].Pos; first > after+1 {
			r.gap(ctx, s, after, first-1, "they were removed from the store before delivery")
		}
		if skipped, err := r.retain(ctx, s); err != nil {
			return progressed, err
		} else if skipped {
			continue
		}
		b := batch{source: s.src.Name()}
		for _, rec := range recs {
			if s.deniedOnly && !rec.denied() {
				continue
			}
			body, err := rec.encode(r.sink.Format, r.format)
			if err != nil {
				r.log.Error("SIEM record cannot be encoded; skipped", "source", rec.Source, "pos", rec.Pos, "error", err.Error())
				continue
			}
			b.recs = append(b.recs, rec)
			b.bodies = append(b.bodies, body)
		}
		last := recs[len(recs)-1].Pos
		if len(b.recs) > 0 {
			if err := r.tr.send(ctx, b); err != nil {
				return progressed, err
			}
		}
		s.sent.Store(last)
		if r.sink.Settle > 0 && len(b.recs) > 0 {
			r.pending = append(r.pending, mark{at: time.Now(), st: s, pos: last})
		} else {
			r.received(s, last)
		}
	}
	return progressed, nil
}

// retain skips, when the sink is more than its retention behind the
// head, to the newest retention records, reporting the gap.
func (r *runner) retain(ctx context.Context, s *stream) (bool, error) {
	head, err := s.src.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", s.src.Name(), err)
	}
	from := s.sent.Load()
	keep := head - r.sink.Retention
	if keep <= from {
		return false, nil
	}
	r.gap(ctx, s, from, keep, fmt.Sprintf("the sink fell more than its retention of %d records behind", r.sink.Retention))
	r.pending = r.pending[:0]
	s.sent.Store(keep)
	s.durable.Store(keep)
	r.save(ctx, true)
	return true, nil
}

// gap reports that records after `after` up to `through` will never
// reach the sink.
func (r *runner) gap(ctx context.Context, s *stream, after, through int64, why string) {
	n := through - after
	r.gaps.Add(n)
	reason := fmt.Sprintf("%s %d to %d (%d records) were not delivered to %s: %s", s.src.Name(), after+1, through, n, r.sink.Name, why)
	r.log.Error("SIEM gap: records skipped", "source", s.src.Name(), "from", after+1, "through", through, "reason", why)
	r.notice(ctx, Notice{Action: ActionGap, Sink: r.sink.Name, Outcome: "failure", Reason: reason})
}

func (r *runner) notice(ctx context.Context, n Notice) {
	if r.e.opts.Notice == nil {
		return
	}
	if err := r.e.opts.Notice(ctx, n); err != nil && ctx.Err() == nil {
		r.log.Error("SIEM notice not audited", "action", n.Action, "reason", n.Reason, "error", err.Error())
	}
}

// save stores the cursors that moved, at most every persistEvery unless
// now.
func (r *runner) save(ctx context.Context, now bool) {
	if !now && time.Since(r.lastSaved) < persistEvery {
		return
	}
	type move struct {
		s   *stream
		pos int64
	}
	var moves []move
	for _, s := range r.streams {
		if d := s.durable.Load(); d != s.saved.Load() {
			moves = append(moves, move{s, d})
		}
	}
	if len(moves) == 0 {
		return
	}
	r.lastSaved = time.Now()
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
	}
	err := r.e.opts.Store.Update(ctx, func(tx store.Tx) error {
		for _, m := range moves {
			if err := tx.PutSIEMCursor(ctx, r.sink.Name, m.s.src.Name(), m.pos); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.log.Warn("SIEM cursor not stored; delivery goes on, a restart resends from the stored one", "error", err.Error())
		return
	}
	for _, m := range moves {
		m.s.saved.Store(m.pos)
	}
}

// checkLag measures the lag and the rate, and audits a sink that stays
// behind past lag_alert, and its catching up.
func (r *runner) checkLag(ctx context.Context, now time.Time) {
	r.lastCheck = now
	if dt := now.Sub(r.rateFrom); dt >= time.Second {
		d := r.delivered.Load()
		r.setRate(float64(d-r.rateBase) / dt.Seconds())
		r.rateFrom, r.rateBase = now, d
	}
	caught, lag := true, int64(0)
	heads := make([]int64, len(r.streams))
	for i, s := range r.streams {
		head, err := s.src.Head(ctx)
		if err != nil {
			return
		}
		heads[i] = head
		lag += max(head-s.durable.Load(), 0)
		if s.durable.Load() < s.target {
			caught = false
		}
	}
	if caught {
		// Caught up: nothing left, or the last target reached in time.
		if r.lagging.Load() && (lag == 0 || now.Sub(r.streams[0].targetAt) <= r.sink.LagAlert) {
			r.lagging.Store(false)
			r.log.Info("SIEM sink caught up")
			r.notice(ctx, Notice{Action: ActionCaughtUp, Sink: r.sink.Name, Outcome: "success",
				Reason: fmt.Sprintf("caught up within %s, at %.0f records/s", r.sink.LagAlert, r.rateValue())})
		}
		for i, s := range r.streams {
			s.target, s.targetAt = heads[i], now
		}
		return
	}
	if !r.lagging.Load() && now.Sub(r.streams[0].targetAt) > r.sink.LagAlert {
		r.lagging.Store(true)
		reason := fmt.Sprintf("%d records behind, not caught up within %s", lag, r.sink.LagAlert)
		if e := r.lastErr.Load(); e != nil {
			reason += ": " + *e
		}
		r.log.Warn("SIEM sink lagging", "lag_events", lag)
		r.notice(ctx, Notice{Action: ActionLagging, Sink: r.sink.Name, Outcome: "failure", Reason: reason})
	}
}

func (r *runner) setRate(v float64)  { r.rate.Store(floatBits(v)) }
func (r *runner) rateValue() float64 { return floatFrom(r.rate.Load()) }

// lag is how many records of the sources the sink has not received.
func (r *runner) lag(ctx context.Context) (int64, error) {
	var lag int64
	for _, s := range r.streams {
		head, err := s.src.Head(ctx)
		if err != nil {
			return 0, err
		}
		lag += max(head-s.durable.Load(), 0)
	}
	return lag, nil
}

func (r *runner) status(ctx context.Context) SinkStatus {
	st := SinkStatus{Name: r.sink.Name, Lagging: r.lagging.Load(), Rate: r.rateValue(), Gaps: r.gaps.Load()}
	st.Lag, _ = r.lag(ctx)
	if e := r.lastErr.Load(); e != nil {
		st.Error = *e
	}
	return st
}
