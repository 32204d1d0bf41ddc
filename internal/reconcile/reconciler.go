// Package reconcile drives environments from their desired state to their
// observed state: it allocates addresses, provisions through the
// enforcement driver, applies effective policies, tears down deleted and
// expired environments, and resumes whatever was under way after a crash.
// It is the loop and its queue; what each step records is a transition of
// the application layer (control/lifecycle.go), which audits it under the
// actor "isolationd" and the request id of the API request that caused
// the work (a generated "rec_" id when none did). Its queue is fed by the
// store's commit announcements (Committed): the API's changes and the
// reconciler's own follow-ups alike. Only the server imports it.
//
// Failures never loosen enforcement. A failed step is retried with capped
// exponential backoff. A failed Provision or Apply leaves the driver's last
// rules in force (drivers apply atomically) and reports the environment
// not enforced, with the reason, until a retry succeeds: a ready
// environment stays ready, an updating one updating, and only an
// environment still being created is failed, after ProvisionAttempts
// tries.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/image"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/workload"
)

// Options configure a Reconciler.
type Options struct {
	// Store is read for the environments and their rules; every write
	// goes through Control, whose clock the reconciler keeps time by.
	Store   store.Reader
	Control *control.Service
	Driver  enforce.Driver
	// Runtime runs environments' workloads once Driver has applied their
	// rules; nil runs none (isolationd serve --runtime none).
	Runtime workload.Runtime
	// Images resolves a workload's image (and pulls it when it names a
	// registry); nil with the simulate runtime, which runs nothing.
	Images Images
	Logger *slog.Logger
	// Registry, when set, receives the reconciler's metrics.
	Registry prometheus.Registerer
	Workers  int
	// RetryBase and RetryMax bound the backoff between attempts at a
	// failed step: RetryBase, doubled per consecutive failure, at most
	// RetryMax (defaults 100 ms and 5 s).
	RetryBase, RetryMax time.Duration
	// ProvisionAttempts is how many consecutive failures an environment
	// that is still being created (pending or provisioning) gets before it
	// is failed (default 8, about 11 s of retrying with the default
	// backoff). Environments that were ready retry for as long as it takes.
	ProvisionAttempts int
	// IdempotencyPurgeInterval is how often expired idempotency records
	// are removed; 0 means hourly.
	IdempotencyPurgeInterval time.Duration
	// DriftInterval is how often the driver verifies the kernel objects
	// of every environment, to repair what changed behind its back
	// (drift.go); 0 means every second, negative never.
	DriftInterval time.Duration
}

// Images resolves a workload's image to unpacked layers; an error
// wrapping image.ErrUnknown fails the environment instead of being retried.
type Images interface {
	Resolve(ctx context.Context, ref string, opts ...image.Option) (image.Resolved, error)
}

// Reconciler runs the lifecycle. Start it once; Stop it once.
type Reconciler struct {
	opts      Options
	ctl       *control.Service
	clock     clockwork.Clock
	log       *slog.Logger
	queue     *queue
	deadlines *deadlines
	passes    *prometheus.HistogramVec
	started   atomic.Bool
	cancel    context.CancelFunc
	stopTimer chan struct{}
	wg        sync.WaitGroup

	mu sync.Mutex
	// applied is the enforcement generation this process last applied per
	// environment: after a restart the driver must be given the rules
	// again even when the store says they were enforced.
	applied map[string]int64
	// failures counts each environment's consecutive failed passes, for
	// the backoff and the provisioning bound.
	failures map[string]int
	// ensure are the environments whose workload the runtime saw stop or
	// vanish: their next pass starts it again even if nothing else is
	// left to do.
	ensure map[string]bool
	// started is, per environment, the workload spec and resources this
	// process last had the runtime bring up, so that a pass that only
	// re-applies rules leaves the running workload alone.
	brought map[string]string
	// causes are the causes of the passes under way by request id, so
	// that the follow-up work a pass's transition asks for keeps the
	// pass's place in time (queue.addCause) when Committed hears of it.
	causes map[string]*heldCause
	// drifted are the environments the driver found drifted, until a
	// pass repairs them.
	drifted map[string]*drift
}

type heldCause struct {
	cause cause
	n     int
}

// New returns a reconciler; nothing runs until Start.
func New(opts Options) *Reconciler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.IdempotencyPurgeInterval <= 0 {
		opts.IdempotencyPurgeInterval = time.Hour
	}
	if opts.DriftInterval == 0 {
		opts.DriftInterval = time.Second
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 100 * time.Millisecond
	}
	if opts.RetryMax < opts.RetryBase {
		opts.RetryMax = max(opts.RetryBase, 5*time.Second)
	}
	if opts.ProvisionAttempts <= 0 {
		opts.ProvisionAttempts = 8
	}
	clock := opts.Control.Clock()
	q := newQueue()
	q.clock = clock
	// One worker stays free of the fan-out for the environments with work
	// of their own (with one worker, that one does both).
	q.fanoutLimit = opts.Workers - 1
	r := &Reconciler{
		opts:      opts,
		ctl:       opts.Control,
		clock:     clock,
		log:       opts.Logger.With("component", "reconciler"),
		queue:     q,
		deadlines: newDeadlines(clock),
		passes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "isolationd_reconcile_duration_seconds", Help: "Time of one reconcile pass of one environment, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"outcome"}),
		applied:   map[string]int64{},
		failures:  map[string]int{},
		ensure:    map[string]bool{},
		brought:   map[string]string{},
		causes:    map[string]*heldCause{},
		drifted:   map[string]*drift{},
		stopTimer: make(chan struct{}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(r.passes)
	}
	return r
}

// Start recovers from whatever the last run left (every environment is
// handed to the driver's Sync, addresses are re-reserved, and every
// environment is queued so unfinished transitions complete and rules are
// applied again), then starts the workers. A Sync that fails for some
// environments is logged, not fatal: their own reconcile reports it.
func (r *Reconciler) Start(ctx context.Context) error {
	var ids []string
	keep := map[string]string{}
	workloads := map[string]bool{}
	cursor := ""
	for {
		page, next, err := r.opts.Store.ListEnvironments(ctx, store.ListQuery{Limit: store.MaxLimit, Cursor: cursor})
		if err != nil {
			return fmt.Errorf("reconcile: list environments: %w", err)
		}
		for _, e := range page {
			ids = append(ids, e.ID)
			if a := e.Enforcement.Address; a != "" {
				keep[e.ID] = a
			}
			if e.Workload != nil && !apiv1.StateIsLeaving(e.State) {
				workloads[e.ID] = true
			}
		}
		if err := r.ctl.Adopt(ctx, page); err != nil {
			return fmt.Errorf("reconcile: adopt addresses: %w", err)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if err := r.opts.Driver.Sync(ctx, keep); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("reconcile: driver sync: %w", err)
		}
		// One environment the driver cannot restore (say, its address lies
		// outside a changed pool) must not keep the server from serving
		// the others. Every environment is queued below: the failed ones
		// are provisioned again and report themselves not enforced (or
		// failed), with the reason, until the cause is fixed.
		r.log.Error("driver sync failed; serving anyway, the reconciler retries the environments it names",
			"environment_ids", enforce.FailedEnvironments(err), "error", err.Error())
	}
	if rt := r.opts.Runtime; rt != nil {
		// Containers outlive isolationd: the ones still running are
		// adopted as they are, orphans go, missing ones are started by
		// their environment's pass below.
		if err := rt.Sync(ctx, workloads); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("reconcile: runtime sync: %w", err)
			}
			r.log.Error("runtime sync failed; serving anyway, each environment's pass starts its workload again", "error", err.Error())
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	for range r.opts.Workers {
		r.wg.Go(func() { r.work(runCtx) })
	}
	if rt := r.opts.Runtime; rt != nil {
		r.wg.Go(func() { r.watchWorkloads(runCtx, rt.Changes()) })
	}
	r.wg.Go(func() { r.timers(runCtx, r.stopTimer) })
	if r.opts.DriftInterval > 0 {
		r.wg.Go(func() { r.watchDrift(runCtx) })
	}
	r.queue.add("", ids...)
	r.started.Store(true)
	r.log.Info("reconciler started", "environments", len(ids), "resumed", len(ids))
	return nil
}

// Started reports whether Start has completed (for /readyz).
func (r *Reconciler) Started() bool { return r.started.Load() }

// Committed queues the environments a commit asks to reconcile (the
// server subscribes it to the store). A commit of a pass under way is
// its follow-up work and keeps the pass's cause; any other is a new
// cause, newer than everything queued before.
func (r *Reconciler) Committed(c store.Commit) {
	if len(c.Reconcile) == 0 {
		return
	}
	r.mu.Lock()
	held := r.causes[c.Cause]
	r.mu.Unlock()
	if held != nil && c.Cause != "" {
		r.queue.addCause(held.cause, c.Reconcile...)
		return
	}
	r.queue.add(c.Cause, c.Reconcile...)
}

// Stop lets the workers finish the environment in hand, then returns; what
// is still queued is resumed by the next Start.
func (r *Reconciler) Stop(ctx context.Context) error {
	if !r.started.Load() {
		return nil
	}
	r.queue.close()
	r.deadlines.stop()
	close(r.stopTimer)
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.cancel()
		<-done
	}
	r.cancel()
	r.started.Store(false)
	return nil
}

func (r *Reconciler) work(ctx context.Context) {
	for {
		it, ok := r.queue.get()
		if !ok {
			return
		}
		start := r.clock.Now()
		outcome := r.reconcile(ctx, it)
		if outcome == outcomeFanOut {
			r.queue.fanOut(it)
			continue
		}
		r.passes.WithLabelValues(outcome).Observe(r.clock.Since(start).Seconds())
		r.queue.done(it.id)
	}
}

// timers wakes for TTL deadlines and purges expired idempotency records.
func (r *Reconciler) timers(ctx context.Context, stop <-chan struct{}) {
	purge := r.clock.NewTicker(r.opts.IdempotencyPurgeInterval)
	defer purge.Stop()
	for {
		select {
		case <-stop:
			return
		case <-r.deadlines.wake:
			r.queue.add("", r.deadlines.due()...)
		case <-purge.Chan():
			n, err := r.ctl.PurgeIdempotency(ctx)
			if n > 0 {
				r.log.Info("purged expired idempotency records", "count", n)
			}
			if err != nil && ctx.Err() == nil {
				r.log.Error("purge idempotency records", "error", err.Error())
			}
		}
	}
}

// pass is one reconcile step of one environment: its context, its logger,
// and the cause its audit events name and its follow-up work carries.
type pass struct {
	ctx   context.Context
	log   *slog.Logger
	cause cause
	// restart says the runtime saw the workload stop or vanish: the pass
	// starts it again even when its spec is what was last started.
	restart bool
}

// outcomeFanOut is what reconcile returns instead of a pass when the
// environment only needs rules applied that someone else's change
// re-rendered: it waits in the queue's fan-out lane.
const outcomeFanOut = "fan-out"

// reconcile takes one step for one environment and returns the outcome for
// metrics. The transition it records asks for whatever it leaves to do.
func (r *Reconciler) reconcile(ctx context.Context, it item) string {
	id, cause := it.id, it.cause
	env, err := r.opts.Store.GetEnvironment(ctx, id)
	if err == nil && !it.sorted && fanOut(env, r.clock.Now()) {
		return outcomeFanOut
	}
	if cause.requestID == "" {
		cause.requestID = control.NewID("rec_")
	}
	r.hold(cause)
	defer r.release(cause)
	p := pass{ctx: ctx, log: r.log.With("environment_id", id, "request_id", cause.requestID), cause: cause}
	if errors.Is(err, store.ErrNotFound) {
		r.deadlines.set(id, time.Time{})
		r.forget(id)
		return "gone"
	}
	if err != nil {
		return r.retry(p, id, "read", err)
	}
	switch env.State {
	case apiv1.StateDeleting, apiv1.StateExpired:
		return r.teardown(p, env)
	case apiv1.StateFailed:
		r.watchTTL(env)
		r.succeeded(id)
		return "idle"
	}
	if r.watchTTL(env) {
		return r.expire(p, env)
	}
	if env.Enforcement.Address == "" {
		return r.allocate(p, env)
	}
	p.restart = r.takeEnsure(id)
	if env.State == apiv1.StateReady && env.Enforcement.Enforced &&
		env.Enforcement.ObservedGeneration == env.Enforcement.Generation && r.appliedGen(id) == env.Enforcement.Generation &&
		!p.restart {
		return "idle"
	}
	return r.enforce(p, env)
}

// hold and release bracket a pass, for Committed.
func (r *Reconciler) hold(c cause) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.causes[c.requestID]
	if h == nil {
		h = &heldCause{cause: c}
		r.causes[c.requestID] = h
	}
	h.n++
}

func (r *Reconciler) release(c cause) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h := r.causes[c.requestID]; h != nil {
		if h.n--; h.n == 0 {
			delete(r.causes, c.requestID)
		}
	}
}

// fanOut reports whether all env needs is its rules applied again: it is
// ready, not expiring, and its rules are stale because a peer's or a
// policy's change re-rendered them. Being created, changed, deleted or
// expired, or restored after a restart, is work of its own, which goes
// first.
func fanOut(env apiv1.Environment, now time.Time) bool {
	if env.State != apiv1.StateReady || (env.ExpiresAt != nil && !now.Before(*env.ExpiresAt)) {
		return false
	}
	return !env.Enforcement.Enforced || env.Enforcement.ObservedGeneration != env.Enforcement.Generation
}

// watchTTL arms env's deadline and reports whether it has passed.
func (r *Reconciler) watchTTL(env apiv1.Environment) bool {
	if env.ExpiresAt == nil {
		r.deadlines.set(env.ID, time.Time{})
		return false
	}
	if !r.clock.Now().Before(*env.ExpiresAt) {
		return true
	}
	r.deadlines.set(env.ID, *env.ExpiresAt)
	return false
}

// allocate gives env an address and moves it to provisioning; an
// exhausted pool fails it.
func (r *Reconciler) allocate(p pass, env apiv1.Environment) string {
	failed, err := r.ctl.Allocate(p.ctx, p.cause.requestID, env.ID)
	if err != nil {
		return r.retry(p, env.ID, "allocate", err)
	}
	if failed != "" {
		return r.gaveUp(p, env.ID, failed)
	}
	return "allocated"
}

// enforce provisions env (idempotently) and applies its effective policy,
// then records what was observed.
func (r *Reconciler) enforce(p pass, env apiv1.Environment) string {
	ep := enforce.Endpoint{Address: env.Enforcement.Address, Namespace: env.Enforcement.Namespace}
	drifts := r.driftSeq(env.ID)
	if env.State != apiv1.StateReady || r.appliedGen(env.ID) == 0 || drifts > 0 {
		var err error
		if ep, err = r.opts.Driver.Provision(p.ctx, env.ID, env.Enforcement.Address); err != nil {
			return r.enforceFailed(p, env, "provisioning", err)
		}
	}
	eff, err := control.Effective(p.ctx, r.opts.Store, env)
	if err != nil {
		return r.retry(p, env.ID, "effective policy", err)
	}
	if err := r.opts.Driver.Apply(p.ctx, env.ID, eff); err != nil {
		return r.enforceFailed(p, env, "applying rules", err)
	}
	// The workload starts only once its rules are in force.
	observed, outcome := r.runWorkload(p, env, ep)
	if outcome != "" {
		return outcome
	}
	r.setApplied(env.ID, eff.Generation)
	r.succeeded(env.ID)
	if _, err := r.ctl.Enforced(p.ctx, p.cause.requestID, env.ID, control.Applied{
		Generation: env.Generation, Rules: eff.Generation, Namespace: ep.Namespace, Workload: observed,
		Repaired: r.repairText(env.ID, drifts, eff.Generation),
	}); err != nil {
		return r.retry(p, env.ID, "record enforcement", err)
	}
	r.repaired(env.ID, drifts)
	p.log.Debug("environment enforced", "generation", eff.Generation)
	return "enforced"
}

// enforceFailed records that the driver could not provision env or apply
// its rules, and retries after a backoff. The environment keeps its state
// and reports itself not enforced with the reason; an environment still
// being created is failed once it has used its ProvisionAttempts.
func (r *Reconciler) enforceFailed(p pass, env apiv1.Environment, step string, err error) string {
	if errors.Is(err, context.Canceled) && p.ctx.Err() != nil {
		return "canceled"
	}
	msg := step + ": " + err.Error()
	attempt, delay := r.failed(env.ID)
	if apiv1.StateIsCreating(env.State) && attempt >= r.opts.ProvisionAttempts {
		return r.fail(p, env.ID, fmt.Sprintf("%s (gave up after %d attempts)", msg, attempt))
	}
	cerr := r.ctl.EnforceFailed(p.ctx, p.cause.requestID, env.ID, msg)
	if cerr != nil && errors.Is(cerr, context.Canceled) {
		return "canceled"
	}
	if cerr != nil {
		r.log.Error("record enforcement failure", "environment_id", env.ID, "error", cerr.Error())
	}
	p.log.Warn("enforcement failed; will retry", "attempt", attempt, "retry_in", delay.String(), "error", msg)
	r.queue.addAfter(env.ID, p.cause, delay)
	return "enforce_failed"
}

// expire marks env expired; its transition queues the teardown.
func (r *Reconciler) expire(p pass, env apiv1.Environment) string {
	if err := r.ctl.Expire(p.ctx, p.cause.requestID, env.ID); err != nil {
		return r.retry(p, env.ID, "expire", err)
	}
	p.log.Info("environment expired")
	return "expired"
}

// teardown removes env's workload, then env from the driver, then from
// the store.
func (r *Reconciler) teardown(p pass, env apiv1.Environment) string {
	if rt := r.opts.Runtime; rt != nil {
		if err := rt.Remove(p.ctx, env.ID); err != nil {
			return r.retry(p, env.ID, "remove workload", err)
		}
	}
	if err := r.opts.Driver.Teardown(p.ctx, env.ID); err != nil {
		return r.retry(p, env.ID, "teardown", err)
	}
	err := r.ctl.Remove(p.ctx, p.cause.requestID, env.ID)
	if errors.Is(err, store.ErrNotFound) {
		return "gone"
	}
	if err != nil {
		return r.retry(p, env.ID, "remove", err)
	}
	r.deadlines.set(env.ID, time.Time{})
	r.forget(env.ID)
	p.log.Info("environment removed")
	return "removed"
}

// fail moves env to failed with msg.
func (r *Reconciler) fail(p pass, id, msg string) string {
	if err := r.ctl.Fail(p.ctx, p.cause.requestID, id, msg); err != nil {
		r.succeeded(id) // the retry counts afresh
		return r.retry(p, id, "record failure", err)
	}
	return r.gaveUp(p, id, msg)
}

// gaveUp ends the retries of an environment that failed with msg: a
// failed environment is not retried; a later change starts afresh.
func (r *Reconciler) gaveUp(p pass, id, msg string) string {
	r.succeeded(id)
	p.log.Warn("environment failed", "message", msg)
	return "failed"
}

// retry logs a failed step and queues the environment again after a
// backoff, so a store hiccup does not spin.
func (r *Reconciler) retry(p pass, id, step string, err error) string {
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	attempt, delay := r.failed(id)
	p.log.Error("reconcile step failed; will retry", "step", step, "attempt", attempt, "retry_in", delay.String(), "error", err.Error())
	r.queue.addAfter(id, p.cause, delay)
	return "error"
}

// failed counts a failed pass of id and returns how many have failed in a
// row and how long to wait before the next: RetryBase doubled per earlier
// failure, at most RetryMax.
func (r *Reconciler) failed(id string) (attempt int, delay time.Duration) {
	r.mu.Lock()
	r.failures[id]++
	attempt = r.failures[id]
	r.mu.Unlock()
	delay = r.opts.RetryBase
	for i := 1; i < attempt && delay < r.opts.RetryMax; i++ {
		delay *= 2
	}
	return attempt, min(delay, r.opts.RetryMax)
}

// succeeded ends id's run of failures.
func (r *Reconciler) succeeded(id string) {
	r.mu.Lock()
	delete(r.failures, id)
	r.mu.Unlock()
}

func (r *Reconciler) appliedGen(id string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied[id]
}

func (r *Reconciler) setApplied(id string, gen int64) {
	r.mu.Lock()
	r.applied[id] = gen
	r.mu.Unlock()
}

func (r *Reconciler) forget(id string) {
	r.mu.Lock()
	delete(r.applied, id)
	delete(r.failures, id)
	delete(r.ensure, id)
	delete(r.brought, id)
	delete(r.drifted, id)
	r.mu.Unlock()
}

// takeEnsure reports, once, that id's workload must be started again.
func (r *Reconciler) takeEnsure(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	again := r.ensure[id]
	delete(r.ensure, id)
	return again
}
