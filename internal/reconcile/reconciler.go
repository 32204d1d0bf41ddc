// Package reconcile drives environments from their desired state to their
// observed state: it allocates addresses, provisions through the
// enforcement driver, applies effective policies, tears down deleted and
// expired environments, and resumes whatever was under way after a crash.
// Waiters learn of every change through the Hub.
//
// Failures never loosen enforcement. A failed step is retried with capped
// exponential backoff. A failed Provision or Apply leaves the driver's last
// rules in force (drivers apply atomically) and reports the environment
// not enforced, with the reason, until a retry succeeds: a ready
// environment stays ready, an updating one updating, and only an
// environment still being created is failed, after ProvisionAttempts
// tries.
//
// Every change the reconciler makes is audited in the transaction that
// makes it, under the actor "isolationd" and the request id of the API
// request that caused the work (a generated "rec_" id when none did):
// environment.provision (an address allocated), environment.ready,
// environment.enforce_failed (a new failure reason), environment.enforced
// (enforcement recovered), environment.fail, environment.expire and
// environment.remove. A successful re-apply that only advances
// enforcement.observed_generation is not audited on its own: the change
// that caused it is, and auditing every re-apply would bury those events.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Actor is who the audit trail names for changes the server makes itself.
var Actor = apiv1.Actor{TokenID: "", Name: "isolationd"}

// Options configure a Reconciler.
type Options struct {
	Store  store.Store
	Driver enforce.Driver
	IPAM   *ipam.Allocator
	Hub    *Hub
	Logger *slog.Logger
	// Audited receives every audit event the reconciler committed (for
	// the JSON-lines sink).
	Audited func(apiv1.AuditEvent)
	// Observe records how long one reconcile pass took and how it ended.
	Observe func(outcome string, d time.Duration)
	Now     func() time.Time
	Workers int
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
}

// Reconciler runs the lifecycle. Start it once; Stop it once.
type Reconciler struct {
	opts      Options
	log       *slog.Logger
	queue     *queue
	deadlines *deadlines
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
}

// New returns a reconciler; nothing runs until Start.
func New(opts Options) *Reconciler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Audited == nil {
		opts.Audited = func(apiv1.AuditEvent) {}
	}
	if opts.Observe == nil {
		opts.Observe = func(string, time.Duration) {}
	}
	if opts.IdempotencyPurgeInterval <= 0 {
		opts.IdempotencyPurgeInterval = time.Hour
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
	q := newQueue()
	// One worker stays free of the fan-out for the environments with work
	// of their own (with one worker, that one does both).
	q.fanoutLimit = opts.Workers - 1
	return &Reconciler{
		opts:      opts,
		log:       opts.Logger.With("component", "reconciler"),
		queue:     q,
		deadlines: newDeadlines(opts.Now),
		applied:   map[string]int64{},
		failures:  map[string]int{},
		stopTimer: make(chan struct{}),
	}
}

// Start recovers from whatever the last run left (every environment is
// handed to the driver's Sync, addresses are re-reserved, and every
// environment is queued so unfinished transitions complete and rules are
// applied again), then starts the workers. A Sync that fails for some
// environments is logged, not fatal: their own reconcile reports it.
func (r *Reconciler) Start(ctx context.Context) error {
	var ids []string
	keep := map[string]string{}
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
		}
		if err := r.opts.Store.Update(ctx, func(tx store.Tx) error { return r.opts.IPAM.Adopt(ctx, tx, page, r.opts.Now()) }); err != nil {
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
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	for range r.opts.Workers {
		r.wg.Go(func() { r.work(runCtx) })
	}
	r.wg.Go(func() { r.timers(runCtx, r.stopTimer) })
	r.queue.add("", ids...)
	r.started.Store(true)
	r.log.Info("reconciler started", "environments", len(ids), "resumed", len(ids))
	return nil
}

// Started reports whether Start has completed (for /readyz).
func (r *Reconciler) Started() bool { return r.started.Load() }

// Enqueue asks for the environments to be reconciled because of the API
// request requestID, which the audit events of that work name.
func (r *Reconciler) Enqueue(requestID string, ids ...string) { r.queue.add(requestID, ids...) }

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
		start := r.opts.Now()
		outcome := r.reconcile(ctx, it)
		if outcome == outcomeFanOut {
			r.queue.fanOut(it)
			continue
		}
		r.opts.Observe(outcome, r.opts.Now().Sub(start))
		r.queue.done(it.id)
	}
}

// timers wakes for TTL deadlines and purges expired idempotency records.
func (r *Reconciler) timers(ctx context.Context, stop <-chan struct{}) {
	purge := time.NewTicker(r.opts.IdempotencyPurgeInterval)
	defer purge.Stop()
	for {
		select {
		case <-stop:
			return
		case <-r.deadlines.wake:
			r.queue.add("", r.deadlines.due()...)
		case <-purge.C:
			err := r.opts.Store.Update(ctx, func(tx store.Tx) error {
				n, err := tx.PurgeIdempotency(ctx, r.opts.Now())
				if n > 0 {
					r.log.Info("purged expired idempotency records", "count", n)
				}
				return err
			})
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
}

// outcomeFanOut is what reconcile returns instead of a pass when the
// environment only needs rules applied that someone else's change
// re-rendered: it waits in the queue's fan-out lane.
const outcomeFanOut = "fan-out"

// reconcile takes one step for one environment and returns the outcome for
// metrics. When a step leaves more to do, the environment is queued again.
func (r *Reconciler) reconcile(ctx context.Context, it item) string {
	id, cause := it.id, it.cause
	env, err := r.opts.Store.GetEnvironment(ctx, id)
	if err == nil && !it.sorted && fanOut(env, r.opts.Now()) {
		return outcomeFanOut
	}
	if cause.requestID == "" {
		cause.requestID = control.NewID("rec_")
	}
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
	if env.State == apiv1.StateReady && env.Enforcement.Enforced &&
		env.Enforcement.ObservedGeneration == env.Enforcement.Generation && r.appliedGen(id) == env.Enforcement.Generation {
		return "idle"
	}
	return r.enforce(p, env)
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
	if !r.opts.Now().Before(*env.ExpiresAt) {
		return true
	}
	r.deadlines.set(env.ID, *env.ExpiresAt)
	return false
}

// allocate gives env an address and moves it to provisioning, in one
// transaction, so a crash never loses track of an address in use.
func (r *Reconciler) allocate(p pass, env apiv1.Environment) string {
	var exhausted error
	err := r.change(p, env.ID, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		exhausted = nil
		if cur.Enforcement.Address != "" || !transient(cur.State) {
			return nil, nil, nil
		}
		a, err := r.opts.IPAM.Allocate(p.ctx, tx, *cur, r.opts.Now())
		if errors.Is(err, ipam.ErrPoolExhausted) {
			exhausted = err
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		addr := a.String()
		before := *cur
		cur.Enforcement.Address = addr
		cur.Enforcement.Driver = r.opts.Driver.Name()
		if cur.State == apiv1.StatePending {
			cur.State = apiv1.StateProvisioning
			cur.StateMessage = ""
		}
		affected, err := control.EnvironmentChangeAffects(p.ctx, tx, &before, cur)
		if err != nil {
			return nil, nil, err
		}
		ev := r.event(p, cur, "environment.provision", apiv1.OutcomeSuccess, "address "+addr+" allocated", &before)
		return &ev, affected, nil
	})
	if err != nil {
		return r.retry(p, env.ID, "allocate", err)
	}
	if exhausted != nil {
		return r.fail(p, env.ID, fmt.Sprintf("allocating an address: %v", exhausted))
	}
	r.queue.addCause(p.cause, env.ID)
	return "allocated"
}

// enforce provisions env (idempotently) and applies its effective policy,
// then records what was observed.
func (r *Reconciler) enforce(p pass, env apiv1.Environment) string {
	ep := enforce.Endpoint{Address: env.Enforcement.Address, Namespace: env.Enforcement.Namespace}
	if env.State != apiv1.StateReady || r.appliedGen(env.ID) == 0 {
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
	r.setApplied(env.ID, eff.Generation)
	r.succeeded(env.ID)
	again := false
	err = r.change(p, env.ID, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if !transient(cur.State) && cur.State != apiv1.StateReady {
			return nil, nil, nil
		}
		before := *cur
		if cur.Enforcement.Generation != eff.Generation {
			// The rules changed while we applied; the next pass applies them.
			again = true
		}
		if cur.Generation != env.Generation {
			again = true
		} else {
			cur.State = apiv1.StateReady
			cur.StateMessage = ""
		}
		cur.Enforcement.ObservedGeneration = eff.Generation
		cur.Enforcement.Enforced = cur.Enforcement.Generation == eff.Generation
		cur.Enforcement.Namespace = ep.Namespace
		cur.Enforcement.Message = ""
		cur.Enforcement.Driver = r.opts.Driver.Name()
		var ev apiv1.AuditEvent
		switch {
		case before.State != apiv1.StateReady && cur.State == apiv1.StateReady:
			ev = r.event(p, cur, "environment.ready", apiv1.OutcomeSuccess, "", &before)
		case before.Enforcement.Message != "":
			ev = r.event(p, cur, "environment.enforced", apiv1.OutcomeSuccess, "the driver accepted the rules again after: "+before.Enforcement.Message, &before)
		default:
			return nil, nil, nil
		}
		return &ev, nil, nil
	})
	if err != nil {
		return r.retry(p, env.ID, "record enforcement", err)
	}
	if again {
		r.queue.addCause(p.cause, env.ID)
	}
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
	if creating(env.State) && attempt >= r.opts.ProvisionAttempts {
		return r.fail(p, env.ID, fmt.Sprintf("%s (gave up after %d attempts)", msg, attempt))
	}
	cerr := r.change(p, env.ID, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if !transient(cur.State) && cur.State != apiv1.StateReady {
			return nil, nil, nil
		}
		before := *cur
		cur.Enforcement.Enforced = false
		cur.Enforcement.Message = msg
		if before.Enforcement.Message == msg {
			return nil, nil, nil // the same failure again: nothing new to record
		}
		ev := r.event(p, cur, "environment.enforce_failed", apiv1.OutcomeFailure, msg, &before)
		return &ev, nil, nil
	})
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

// expire marks env expired (audited), then queues its teardown.
func (r *Reconciler) expire(p pass, env apiv1.Environment) string {
	err := r.change(p, env.ID, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if cur.ExpiresAt == nil || r.opts.Now().Before(*cur.ExpiresAt) || cur.State == apiv1.StateDeleting || cur.State == apiv1.StateExpired {
			return nil, nil, nil
		}
		before := *cur
		cur.State = apiv1.StateExpired
		cur.StateMessage = "ttl of " + ttlText(cur.TTLSeconds) + " passed at " + cur.ExpiresAt.UTC().Format(time.RFC3339)
		cur.UpdatedAt = r.opts.Now().UTC()
		affected, err := control.EnvironmentChangeAffects(p.ctx, tx, &before, cur)
		if err != nil {
			return nil, nil, err
		}
		ev := r.event(p, cur, "environment.expire", apiv1.OutcomeSuccess, cur.StateMessage, &before)
		return &ev, affected, nil
	})
	if err != nil {
		return r.retry(p, env.ID, "expire", err)
	}
	p.log.Info("environment expired")
	r.queue.addCause(p.cause, env.ID)
	return "expired"
}

// teardown removes env from the driver, then from the store with the
// policy it owns (audited as environment.remove), freeing its address in
// the same transaction.
func (r *Reconciler) teardown(p pass, env apiv1.Environment) string {
	ctx := p.ctx
	if err := r.opts.Driver.Teardown(ctx, env.ID); err != nil {
		return r.retry(p, env.ID, "teardown", err)
	}
	var affected []string
	var stored *apiv1.AuditEvent
	err := r.opts.Store.Update(ctx, func(tx store.Tx) error {
		stored = nil
		cur, err := tx.GetEnvironment(ctx, env.ID)
		if err != nil {
			return err
		}
		if cur.State != apiv1.StateDeleting && cur.State != apiv1.StateExpired {
			return nil
		}
		owned, _, err := tx.ListPolicies(ctx, store.ListQuery{Owner: cur.ID, Limit: store.MaxLimit})
		if err != nil {
			return err
		}
		for _, pol := range owned {
			if err := tx.DeletePolicy(ctx, pol.ID); err != nil {
				return err
			}
		}
		if err := tx.DeleteEnvironment(ctx, cur.ID); err != nil {
			return err
		}
		if err := r.opts.IPAM.Release(ctx, tx, cur, r.opts.Now()); err != nil {
			return err
		}
		if affected, err = control.EnvironmentChangeAffects(ctx, tx, &cur, nil); err != nil {
			return err
		}
		if affected, err = control.Invalidate(ctx, tx, affected, cur.ID); err != nil {
			return err
		}
		ev := r.event(p, &cur, "environment.remove", apiv1.OutcomeSuccess, "torn down after it was "+cur.State, &cur)
		ev.Changes = &apiv1.Changes{Before: cur}
		if cur.State == apiv1.StateDeleting {
			// The removal is the delete's doing, whatever queued this
			// pass: a retry of an earlier change may run before the
			// delete's own enqueue arrives. Its event, committed with the
			// state, names the request.
			dels, _, err := tx.ListAudit(ctx, store.AuditQuery{ResourceType: "environment", ResourceID: cur.ID,
				Action: "environment.delete", Outcome: apiv1.OutcomeSuccess, Limit: 1})
			if err != nil {
				return err
			}
			if len(dels) == 1 {
				ev.RequestID = dels[0].RequestID
			}
		}
		ev, err = tx.AppendAudit(ctx, ev)
		stored = &ev
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return "gone"
	}
	if err != nil {
		return r.retry(p, env.ID, "remove", err)
	}
	if stored != nil {
		r.opts.Audited(*stored)
	}
	r.deadlines.set(env.ID, time.Time{})
	r.forget(env.ID)
	r.opts.Hub.Notify(append(affected, env.ID)...)
	r.queue.addCause(p.cause, affected...)
	p.log.Info("environment removed")
	return "removed"
}

// fail moves env to failed with msg, audited as a failure the server
// observed.
func (r *Reconciler) fail(p pass, id, msg string) string {
	r.succeeded(id) // a failed environment is not retried; a later change starts afresh
	err := r.change(p, id, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if !transient(cur.State) && cur.State != apiv1.StateReady {
			return nil, nil, nil
		}
		before := *cur
		cur.State = apiv1.StateFailed
		cur.StateMessage = msg
		cur.Enforcement.Enforced = false
		cur.Enforcement.Message = msg
		cur.UpdatedAt = r.opts.Now().UTC()
		ev := r.event(p, cur, "environment.fail", apiv1.OutcomeFailure, msg, &before)
		return &ev, nil, nil
	})
	if err != nil {
		return r.retry(p, id, "record failure", err)
	}
	p.log.Warn("environment failed", "message", msg)
	return "failed"
}

// change runs fn on the current version of environment id in one
// transaction, stores what fn did to it, bumps the environments fn names
// as affected, and appends fn's audit event. fn returning no change (it
// left cur as it was, with no event) writes nothing.
func (r *Reconciler) change(p pass, id string, fn func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error)) error {
	ctx := p.ctx
	var committed *apiv1.AuditEvent
	var bumped []string
	err := r.opts.Store.Update(ctx, func(tx store.Tx) error {
		committed, bumped = nil, nil
		cur, err := tx.GetEnvironment(ctx, id)
		if err != nil {
			return err
		}
		orig := cur
		ev, affected, err := fn(tx, &cur)
		if err != nil {
			return err
		}
		if ev == nil && reflect.DeepEqual(orig, cur) {
			return nil
		}
		if orig.State != cur.State {
			cur.UpdatedAt = r.opts.Now().UTC()
		}
		if err := tx.UpdateEnvironment(ctx, cur); err != nil {
			return err
		}
		if bumped, err = control.Invalidate(ctx, tx, affected, cur.ID); err != nil {
			return err
		}
		if ev != nil {
			ev.Changes = &apiv1.Changes{Before: ev.Changes.Before, After: cur}
			stored, err := tx.AppendAudit(ctx, *ev)
			if err != nil {
				return err
			}
			committed = &stored
		}
		return nil
	})
	if err != nil {
		return err
	}
	if committed != nil {
		r.opts.Audited(*committed)
	}
	r.opts.Hub.Notify(append(bumped, id)...)
	r.queue.addCause(p.cause, bumped...)
	return nil
}

// event builds an audit event for a change the server made by itself.
func (r *Reconciler) event(p pass, env *apiv1.Environment, action, outcome, reason string, before *apiv1.Environment) apiv1.AuditEvent {
	return apiv1.AuditEvent{
		ID:         control.NewID("evt_"),
		Time:       r.opts.Now().UTC(),
		RequestID:  p.cause.requestID,
		Actor:      Actor,
		ProjectID:  env.ProjectID,
		Action:     action,
		Resource:   apiv1.ResourceRef{Type: "environment", ID: env.ID},
		Outcome:    outcome,
		StatusCode: 0,
		Reason:     reason,
		Changes:    &apiv1.Changes{Before: *before},
	}
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
	r.mu.Unlock()
}

// creating reports whether an environment has not been ready yet since it
// was created, which is when a failure to provision it fails it.
func creating(state string) bool {
	return state == apiv1.StatePending || state == apiv1.StateProvisioning
}

// transient reports whether a state is on its way to ready.
func transient(state string) bool {
	return state == apiv1.StatePending || state == apiv1.StateProvisioning || state == apiv1.StateUpdating
}

func ttlText(ttl *int64) string {
	if ttl == nil {
		return "?"
	}
	return (time.Duration(*ttl) * time.Second).String()
}
