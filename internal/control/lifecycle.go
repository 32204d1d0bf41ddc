package control

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/ipam"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// The reconciler's transitions: what it records of an environment as it
// drives it from desired to observed state. Each is one transaction on
// the environment's current version, audited under ServerActor with the
// request id of the pass's cause (the API request whose change the pass
// reconciles): environment.provision (an address allocated),
// environment.ready, environment.enforce_failed (a new failure reason),
// environment.enforced (enforcement recovered), environment.drift and
// environment.repair (kernel objects changed outside isolationd, and
// made right again), environment.fail,
// environment.expire and environment.remove. A change that writes nothing
// audits nothing; a re-apply that only advances
// enforcement.observed_generation is written but not audited on its own:
// the change that caused it is, and auditing every re-apply would bury
// those events. The work a transition leaves (the environment itself
// again, the environments whose rules it touched) is asked for with
// tx.Reconcile under the same cause.

// Applied is what the driver applied to an environment in one pass.
type Applied struct {
	// Generation is the environment's generation the pass read, and
	// Rules the enforcement generation of the rules it applied.
	Generation, Rules int64
	// Namespace is where the driver put the environment.
	Namespace string
	// Workload is what the runtime observed of the environment's
	// workload once it started it; nil without a workload.
	Workload *Observed
	// Repaired, when the pass repaired drift (see Drifted), says what
	// drifted and what was done: the event is environment.repair.
	Repaired string
}

// Allocate gives environment id an address and moves it to provisioning,
// in one transaction, so a crash never loses track of an address in use;
// the environment is reconciled again. When the pool is exhausted the
// environment is failed instead, with the reason failed returns.
func (s *Service) Allocate(ctx context.Context, cause, id string) (failed string, err error) {
	err = s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		failed = ""
		st := step{reconcile: []string{id}}
		if cur.Enforcement.Address != "" || !apiv1.StateIsTransient(cur.State) {
			return st, nil
		}
		before := *cur
		a, err := s.ipam.Allocate(ctx, tx, *cur, s.clock.Now())
		if err != nil {
			if !errors.Is(err, ipam.ErrPoolExhausted) {
				return step{}, err
			}
			failed = fmt.Sprintf("allocating an address: %v", err)
			return fail(cur, failed), nil
		}
		addr := a.String()
		cur.Enforcement.Address = addr
		cur.Enforcement.Driver = s.driver
		if cur.State == apiv1.StatePending {
			cur.State = apiv1.StateProvisioning
			cur.StateMessage = ""
		}
		if st.affected, err = EnvironmentChangeAffects(ctx, tx, &before, cur); err != nil {
			return step{}, err
		}
		st.action, st.outcome, st.reason = "environment.provision", apiv1.OutcomeSuccess, "address "+addr+" allocated"
		return st, nil
	})
	return failed, err
}

// Enforced records that the driver applied a's rules to environment id:
// it is ready (unless it changed meanwhile) and enforced (unless its
// rules did). It reports whether another pass is needed, which it has
// asked for.
func (s *Service) Enforced(ctx context.Context, cause, id string, a Applied) (again bool, err error) {
	err = s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		again = false
		if !apiv1.StateIsTransient(cur.State) && cur.State != apiv1.StateReady {
			return step{}, nil
		}
		before := *cur
		// The rules or the environment changed while the driver applied:
		// the next pass applies them.
		again = cur.Enforcement.Generation != a.Rules || cur.Generation != a.Generation
		if cur.Generation == a.Generation {
			cur.State = apiv1.StateReady
			cur.StateMessage = ""
		}
		cur.Enforcement.ObservedGeneration = a.Rules
		cur.Enforcement.Enforced = cur.Enforcement.Generation == a.Rules
		cur.Enforcement.Namespace = a.Namespace
		cur.Enforcement.Message = ""
		cur.Enforcement.Driver = s.driver
		cur.Enforcement.Runtime = s.runtime
		if a.Workload != nil {
			observe(cur, *a.Workload)
		}
		var st step
		if again {
			st.reconcile = []string{id}
		}
		switch {
		case a.Repaired != "":
			st.action, st.outcome, st.reason = "environment.repair", apiv1.OutcomeSuccess, a.Repaired
		case before.State != apiv1.StateReady && cur.State == apiv1.StateReady:
			st.action, st.outcome = "environment.ready", apiv1.OutcomeSuccess
		case before.Enforcement.Message != "":
			st.action, st.outcome = "environment.enforced", apiv1.OutcomeSuccess
			st.reason = "the driver accepted the rules again after: " + before.Enforcement.Message
		}
		return st, nil
	})
	return again, err
}

// EnforceFailed records that the driver could not provision environment
// id or apply its rules: it keeps its state and reports itself not
// enforced, with msg. The same reason again audits nothing.
func (s *Service) EnforceFailed(ctx context.Context, cause, id, msg string) error {
	return s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		if !apiv1.StateIsTransient(cur.State) && cur.State != apiv1.StateReady {
			return step{}, nil
		}
		same := cur.Enforcement.Message == msg
		cur.Enforcement.Enforced = false
		cur.Enforcement.Message = msg
		if same {
			return step{}, nil
		}
		return step{action: "environment.enforce_failed", outcome: apiv1.OutcomeFailure, reason: msg}, nil
	})
}

// Fail moves environment id to failed with msg, audited as a failure the
// server observed.
func (s *Service) Fail(ctx context.Context, cause, id, msg string) error {
	return s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		if !apiv1.StateIsTransient(cur.State) && cur.State != apiv1.StateReady {
			return step{}, nil
		}
		return fail(cur, msg), nil
	})
}

// fail is the change that fails cur with msg.
func fail(cur *apiv1.Environment, msg string) step {
	cur.State = apiv1.StateFailed
	cur.StateMessage = msg
	cur.Enforcement.Enforced = false
	cur.Enforcement.Message = msg
	return step{action: "environment.fail", outcome: apiv1.OutcomeFailure, reason: msg}
}

// Expire marks environment id expired once its TTL has passed on the
// service's clock, revoking its session tokens; the environment is
// reconciled again, to be torn down.
func (s *Service) Expire(ctx context.Context, cause, id string) error {
	return s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		st := step{reconcile: []string{id}}
		if cur.ExpiresAt == nil || s.clock.Now().Before(*cur.ExpiresAt) || apiv1.StateIsLeaving(cur.State) {
			return st, nil
		}
		before := *cur
		cur.State = apiv1.StateExpired
		cur.StateMessage = "ttl of " + ttlText(cur.TTLSeconds) + " passed at " + cur.ExpiresAt.UTC().Format(time.RFC3339)
		if err := s.revokeEnvironmentSessions(ctx, tx, Call{RequestID: cause, Actor: ServerActor}, *cur); err != nil {
			return step{}, err
		}
		var err error
		if st.affected, err = EnvironmentChangeAffects(ctx, tx, &before, cur); err != nil {
			return step{}, err
		}
		st.action, st.outcome, st.reason = "environment.expire", apiv1.OutcomeSuccess, cur.StateMessage
		return st, nil
	})
}

// Remove deletes environment id, deleting or expired, once the driver
// has torn it down: with the policies it owns, freeing its address, and
// invalidating the environments whose rules named it. A deletion's
// removal is credited to the delete's request, whatever caused the pass.
// An environment already gone is store.ErrNotFound.
func (s *Service) Remove(ctx context.Context, cause, id string) error {
	return s.transition(ctx, cause, id, func(tx store.Tx, cur *apiv1.Environment) (step, error) {
		if !apiv1.StateIsLeaving(cur.State) {
			return step{}, nil
		}
		owned, _, err := tx.ListPolicies(ctx, store.ListQuery{Owner: cur.ID, Limit: store.MaxLimit})
		if err != nil {
			return step{}, err
		}
		for _, pol := range owned {
			if err := tx.DeletePolicy(ctx, pol.ID); err != nil {
				return step{}, err
			}
		}
		if err := tx.DeleteEnvironment(ctx, cur.ID); err != nil {
			return step{}, err
		}
		if err := s.ipam.Release(ctx, tx, *cur, s.clock.Now()); err != nil {
			return step{}, err
		}
		st := step{removed: true, action: "environment.remove", outcome: apiv1.OutcomeSuccess, reason: "torn down after it was " + cur.State}
		if st.affected, err = EnvironmentChangeAffects(ctx, tx, cur, nil); err != nil {
			return step{}, err
		}
		if cur.State == apiv1.StateDeleting {
			// A retry of an earlier change may run before the delete's own
			// pass: the delete's event, committed with the state, names
			// the request.
			dels, _, err := tx.ListAudit(ctx, store.AuditQuery{ResourceType: "environment", ResourceID: cur.ID,
				Action: "environment.delete", Outcome: apiv1.OutcomeSuccess, Limit: 1})
			if err != nil {
				return step{}, err
			}
			if len(dels) == 1 {
				st.requestID = dels[0].RequestID
			}
		}
		return st, nil
	})
}

// Adopt re-reserves the addresses envs hold (at start, page by page), so
// that what a crash left is never handed out twice.
func (s *Service) Adopt(ctx context.Context, envs []apiv1.Environment) error {
	return s.store.Update(ctx, func(tx store.Tx) error { return s.ipam.Adopt(ctx, tx, envs, s.clock.Now()) })
}

// PurgeIdempotency removes the idempotency records expired on the
// service's clock and returns how many.
func (s *Service) PurgeIdempotency(ctx context.Context) (int, error) {
	var n int
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.PurgeIdempotency(ctx, s.clock.Now())
		return err
	})
	return n, err
}

// step is what a transition's function did to its environment, as it
// reports it to transition.
type step struct {
	// action, outcome and reason are the audit event's; no action, no
	// event.
	action, outcome, reason string
	// requestID, when set, is the event's request id instead of the
	// cause.
	requestID string
	// affected are the environments whose rules the change touches, to
	// invalidate and reconcile; reconcile are more to reconcile.
	affected, reconcile []string
	// removed says the function deleted the environment.
	removed bool
}

// transition runs fn on the current version of environment id in one
// transaction, stores what fn did to it (stamping UpdatedAt when its
// state changed), invalidates the environments fn names as affected,
// appends fn's audit event, and asks for the affected environments and
// fn's others to be reconciled because of cause. fn leaving cur as it
// was, with no event, writes nothing.
func (s *Service) transition(ctx context.Context, cause, id string, fn func(tx store.Tx, cur *apiv1.Environment) (step, error)) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetEnvironment(ctx, id)
		if err != nil {
			return err
		}
		orig := cur
		st, err := fn(tx, &cur)
		if err != nil {
			return err
		}
		if st.action == "" && !st.removed && reflect.DeepEqual(orig, cur) {
			reconcile(tx, cause, st.reconcile)
			return nil
		}
		changes := &apiv1.Changes{Before: orig}
		if !st.removed {
			if orig.State != cur.State {
				cur.UpdatedAt = s.clock.Now().UTC()
			}
			if err := tx.UpdateEnvironment(ctx, cur); err != nil {
				return err
			}
			changes.After = cur
		}
		bumped, err := Invalidate(ctx, tx, st.affected, id)
		if err != nil {
			return err
		}
		reconcile(tx, cause, append(bumped, st.reconcile...))
		if st.action == "" {
			return nil
		}
		c := Call{RequestID: cause, Actor: ServerActor}
		if st.requestID != "" {
			c.RequestID = st.requestID
		}
		ev := s.Event(c, st.action, apiv1.ResourceRef{Type: "environment", ID: id}, orig.ProjectID, st.outcome)
		ev.Reason = st.reason
		ev.Changes = changes
		_, err = tx.AppendAudit(ctx, ev)
		return err
	})
}

// reconcile asks for ids, if any, to be reconciled because of cause.
func reconcile(tx store.Tx, cause string, ids []string) {
	if len(ids) > 0 {
		tx.Reconcile(cause, ids...)
	}
}

func ttlText(ttl *int64) string {
	if ttl == nil {
		return "?"
	}
	return (time.Duration(*ttl) * time.Second).String()
}
