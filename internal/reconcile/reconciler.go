// Package reconcile drives environments from their desired state to their
// observed state: it allocates addresses, provisions through the
// enforcement driver, applies effective policies, tears down deleted and
// expired environments, and resumes whatever was under way after a crash.
// Waiters learn of every change through the Hub.
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
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Actor is who the audit trail names for changes the server makes itself.
var Actor = apiv1.Actor{TokenID: "", Name: "isolationd"}

// Options configure a Reconciler.
type Options struct {
	Store  store.Store
	Driver enforce.Driver
	IPAM   *IPAM
	Hub    *Hub
	Logger *slog.Logger
	// Audited receives every audit event the reconciler committed (for
	// the JSON-lines sink).
	Audited func(apiv1.AuditEvent)
	// Observe records how long one reconcile pass took and how it ended.
	Observe func(outcome string, d time.Duration)
	Now     func() time.Time
	Workers int
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
	return &Reconciler{
		opts:      opts,
		log:       opts.Logger.With("component", "reconciler"),
		queue:     newQueue(),
		deadlines: newDeadlines(opts.Now),
		applied:   map[string]int64{},
		stopTimer: make(chan struct{}),
	}
}

// Start recovers from whatever the last run left (every environment is
// handed to the driver's Sync, addresses are re-reserved, and every
// environment is queued so unfinished transitions complete and rules are
// applied again), then starts the workers.
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
				r.opts.IPAM.Reserve(e.ID, a)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if err := r.opts.Driver.Sync(ctx, keep); err != nil {
		return fmt.Errorf("reconcile: driver sync: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	for range r.opts.Workers {
		r.wg.Go(func() { r.work(runCtx) })
	}
	r.wg.Go(func() { r.timers(runCtx, r.stopTimer) })
	r.queue.add(ids...)
	r.started.Store(true)
	r.log.Info("reconciler started", "environments", len(ids), "resumed", len(ids))
	return nil
}

// Started reports whether Start has completed (for /readyz).
func (r *Reconciler) Started() bool { return r.started.Load() }

// Enqueue asks for the environments to be reconciled.
func (r *Reconciler) Enqueue(ids ...string) { r.queue.add(ids...) }

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
		id, ok := r.queue.get()
		if !ok {
			return
		}
		start := r.opts.Now()
		outcome := r.reconcile(ctx, id)
		r.opts.Observe(outcome, r.opts.Now().Sub(start))
		r.queue.done(id)
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
			r.queue.add(r.deadlines.due()...)
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

// reconcile takes one step for one environment and returns the outcome for
// metrics. When a step leaves more to do, the environment is queued again.
func (r *Reconciler) reconcile(ctx context.Context, id string) string {
	env, err := r.opts.Store.GetEnvironment(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		r.deadlines.set(id, time.Time{})
		r.forget(id)
		return "gone"
	}
	if err != nil {
		return r.retry(id, "read", err)
	}
	log := r.log.With("environment_id", id, "request_id", NewID("rec_"))
	switch env.State {
	case apiv1.StateDeleting, apiv1.StateExpired:
		return r.teardown(ctx, log, env)
	case apiv1.StateFailed:
		r.watchTTL(env)
		return "idle"
	}
	if r.watchTTL(env) {
		return r.expire(ctx, log, env)
	}
	if env.Enforcement.Address == "" {
		return r.allocate(ctx, log, env)
	}
	if env.State == apiv1.StateReady && env.Enforcement.Enforced &&
		env.Enforcement.ObservedGeneration == env.Enforcement.Generation && r.appliedGen(id) == env.Enforcement.Generation {
		return "idle"
	}
	return r.enforce(ctx, log, env)
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
func (r *Reconciler) allocate(ctx context.Context, log *slog.Logger, env apiv1.Environment) string {
	addr, err := r.opts.IPAM.Allocate(env.ID)
	if err != nil {
		return r.fail(ctx, log, env.ID, fmt.Sprintf("allocating an address: %v", err))
	}
	committed := false
	err = r.change(ctx, env.ID, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if cur.Enforcement.Address != "" || !transient(cur.State) {
			return nil, nil, nil
		}
		before := *cur
		cur.Enforcement.Address = addr
		cur.Enforcement.Driver = r.opts.Driver.Name()
		if cur.State == apiv1.StatePending {
			cur.State = apiv1.StateProvisioning
			cur.StateMessage = ""
		}
		affected, err := EnvironmentChangeAffects(ctx, tx, &before, cur)
		if err != nil {
			return nil, nil, err
		}
		committed = true
		return nil, affected, nil
	})
	if err != nil || !committed {
		r.opts.IPAM.Release(env.ID, addr)
	}
	if err != nil {
		return r.retry(env.ID, "allocate", err)
	}
	r.queue.add(env.ID)
	return "allocated"
}

// enforce provisions env (idempotently) and applies its effective policy,
// then records what was observed.
func (r *Reconciler) enforce(ctx context.Context, log *slog.Logger, env apiv1.Environment) string {
	var ep enforce.Endpoint
	var err error
	if env.State != apiv1.StateReady || r.appliedGen(env.ID) == 0 {
		ep, err = r.opts.Driver.Provision(ctx, env.ID, env.Enforcement.Address)
		if err != nil {
			return r.fail(ctx, log, env.ID, fmt.Sprintf("provisioning: %v", err))
		}
	} else {
		ep = enforce.Endpoint{Address: env.Enforcement.Address, Namespace: env.Enforcement.Namespace}
	}
	eff, err := Effective(ctx, r.opts.Store, env)
	if err != nil {
		return r.retry(env.ID, "effective policy", err)
	}
	if err := r.opts.Driver.Apply(ctx, env.ID, eff); err != nil {
		return r.fail(ctx, log, env.ID, fmt.Sprintf("applying rules: %v", err))
	}
	r.setApplied(env.ID, eff.Generation)
	again := false
	err = r.change(ctx, env.ID, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if !transient(cur.State) && cur.State != apiv1.StateReady {
			return nil, nil, nil
		}
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
		return nil, nil, nil
	})
	if err != nil {
		return r.retry(env.ID, "record enforcement", err)
	}
	if again {
		r.queue.add(env.ID)
	}
	log.Debug("environment enforced", "generation", eff.Generation)
	return "enforced"
}

// expire marks env expired (audited), then queues its teardown.
func (r *Reconciler) expire(ctx context.Context, log *slog.Logger, env apiv1.Environment) string {
	err := r.change(ctx, env.ID, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if cur.ExpiresAt == nil || r.opts.Now().Before(*cur.ExpiresAt) || cur.State == apiv1.StateDeleting || cur.State == apiv1.StateExpired {
			return nil, nil, nil
		}
		before := *cur
		cur.State = apiv1.StateExpired
		cur.StateMessage = "ttl of " + ttlText(cur.TTLSeconds) + " passed at " + cur.ExpiresAt.UTC().Format(time.RFC3339)
		cur.UpdatedAt = r.opts.Now().UTC()
		affected, err := EnvironmentChangeAffects(ctx, tx, &before, cur)
		if err != nil {
			return nil, nil, err
		}
		ev := r.event(cur, "environment.expire", apiv1.OutcomeSuccess, cur.StateMessage, &before)
		return &ev, affected, nil
	})
	if err != nil {
		return r.retry(env.ID, "expire", err)
	}
	log.Info("environment expired")
	r.queue.add(env.ID)
	return "expired"
}

// teardown removes env from the driver, then from the store with the
// policy it owns, and frees its address.
func (r *Reconciler) teardown(ctx context.Context, log *slog.Logger, env apiv1.Environment) string {
	if err := r.opts.Driver.Teardown(ctx, env.ID); err != nil {
		return r.retry(env.ID, "teardown", err)
	}
	var affected []string
	err := r.opts.Store.Update(ctx, func(tx store.Tx) error {
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
		for _, p := range owned {
			if err := tx.DeletePolicy(ctx, p.ID); err != nil {
				return err
			}
		}
		if err := tx.DeleteEnvironment(ctx, cur.ID); err != nil {
			return err
		}
		if affected, err = EnvironmentChangeAffects(ctx, tx, &cur, nil); err != nil {
			return err
		}
		affected, err = Invalidate(ctx, tx, affected, cur.ID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return "gone"
	}
	if err != nil {
		return r.retry(env.ID, "remove", err)
	}
	r.opts.IPAM.Release(env.ID, env.Enforcement.Address)
	r.deadlines.set(env.ID, time.Time{})
	r.forget(env.ID)
	r.opts.Hub.Notify(append(affected, env.ID)...)
	r.queue.add(affected...)
	log.Info("environment removed")
	return "removed"
}

// fail moves env to failed with msg, audited as a failure the server
// observed.
func (r *Reconciler) fail(ctx context.Context, log *slog.Logger, id, msg string) string {
	err := r.change(ctx, id, func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error) {
		if !transient(cur.State) && cur.State != apiv1.StateReady {
			return nil, nil, nil
		}
		before := *cur
		cur.State = apiv1.StateFailed
		cur.StateMessage = msg
		cur.Enforcement.Enforced = false
		cur.Enforcement.Message = msg
		cur.UpdatedAt = r.opts.Now().UTC()
		ev := r.event(cur, "environment.fail", apiv1.OutcomeFailure, msg, &before)
		return &ev, nil, nil
	})
	if err != nil {
		return r.retry(id, "record failure", err)
	}
	log.Warn("environment failed", "message", msg)
	return "failed"
}

// change runs fn on the current version of environment id in one
// transaction, stores what fn did to it, bumps the environments fn names
// as affected, and appends fn's audit event. fn returning no change (it
// left cur as it was, with no event) writes nothing.
func (r *Reconciler) change(ctx context.Context, id string, fn func(tx store.Tx, cur *apiv1.Environment) (*apiv1.AuditEvent, []string, error)) error {
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
		if bumped, err = Invalidate(ctx, tx, affected, cur.ID); err != nil {
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
	r.queue.add(bumped...)
	return nil
}

// event builds an audit event for a change the server made by itself.
func (r *Reconciler) event(env *apiv1.Environment, action, outcome, reason string, before *apiv1.Environment) apiv1.AuditEvent {
	return apiv1.AuditEvent{
		ID:         NewID("evt_"),
		Time:       r.opts.Now().UTC(),
		RequestID:  NewID("rec_"),
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

// retry logs a failed step and queues the environment again after a pause,
// so a store hiccup does not spin.
func (r *Reconciler) retry(id, step string, err error) string {
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	r.log.Error("reconcile step failed; will retry", "environment_id", id, "step", step, "error", err.Error())
	r.deadlines.set(id, r.opts.Now().Add(time.Second))
	return "error"
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
	r.mu.Unlock()
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
