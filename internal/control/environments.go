package control

import (
	"context"
	"reflect"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// CreateEnvironment creates an environment in state pending and asks for
// it, and every environment whose rules it changes, to be reconciled.
func (s *Service) CreateEnvironment(ctx context.Context, c Call, in apiv1.EnvironmentCreate) (apiv1.Environment, error) {
	now := s.now()
	env := apiv1.Environment{
		ID: NewID("env_"), ProjectID: in.ProjectID, Name: in.Name, Description: in.Description,
		Labels: apiv1.NormalizeLabels(in.Labels), Resources: resources(apiv1.Resources{
			CPUMillis: apiv1.DefaultCPUMillis, MemoryMB: apiv1.DefaultMemoryMB, DiskGB: apiv1.DefaultDiskGB,
			MaxProcesses: apiv1.DefaultMaxProcesses,
		}, in.Resources),
		State: apiv1.StatePending, Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: apiv1.ETag(1),
		Enforcement: apiv1.Enforcement{Driver: s.driver, Runtime: s.runtime, Generation: 1},
	}
	setTTL(&env, in.TTLSeconds, now)
	if in.Workload != nil {
		if err := s.runsWorkloads(); err != nil {
			return apiv1.Environment{}, err
		}
		env.Workload = &apiv1.Workload{WorkloadSpec: in.Workload.Normalize(), State: apiv1.WorkloadStarting}
	}
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Environment], error) {
		policies, err := checkEnvironmentRoom(ctx, tx, env.ProjectID)
		if err != nil {
			return change[apiv1.Environment]{}, err
		}
		if err := tx.CreateEnvironment(ctx, env); err != nil {
			return change[apiv1.Environment]{}, nameConflict(ctx, tx, err, "environment", env.ProjectID, env.Name)
		}
		affected, err := EnvironmentChangeAffectsAmong(ctx, tx, policies, nil, &env)
		if err != nil {
			return change[apiv1.Environment]{}, err
		}
		if err := keepAssertions(ctx, tx, guard{projects: []string{env.ProjectID}, changed: affected, undo: undoEnvironment(nil, &env)}); err != nil {
			return change[apiv1.Environment]{}, err
		}
		bumped, err := Invalidate(ctx, tx, affected, env.ID)
		if err != nil {
			return change[apiv1.Environment]{}, err
		}
		return change[apiv1.Environment]{
			result: env, action: "environment.create", resource: ref("environment", env.ID), projectID: env.ProjectID, after: env,
			reconcile: append(bumped, env.ID),
		}, nil
	})
}

// PatchEnvironment changes the fields of in that are present.
func (s *Service) PatchEnvironment(ctx context.Context, c Call, id string, in apiv1.EnvironmentPatch) (apiv1.Environment, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Environment], error) {
		before, after, bumped, err := s.updateEnvironment(ctx, tx, c, id, in)
		if err != nil {
			return change[apiv1.Environment]{}, err
		}
		return change[apiv1.Environment]{
			result: after, action: "environment.update", resource: ref("environment", id), projectID: after.ProjectID, before: before, after: after,
			reconcile: bumped,
		}, nil
	})
}

// updateEnvironment applies a patch inside tx: it checks If-Match and the
// state, bumps generation when the spec changes (state updating, unless
// the environment is still being provisioned) and re-enforces every
// environment the change touches. It returns the ids to reconcile.
func (s *Service) updateEnvironment(ctx context.Context, tx store.Tx, c Call, id string, in apiv1.EnvironmentPatch) (before, after apiv1.Environment, reconcileIDs []string, err error) {
	cur, err := tx.GetEnvironment(ctx, id)
	if err := writable(c, err, "environment", id, cur.Generation); err != nil {
		return cur, cur, nil, err
	}
	if apiv1.StateIsLeaving(cur.State) {
		return cur, cur, nil, problem.New(problem.State, "environment %q is %s; it cannot be changed", id, cur.State)
	}
	next := cur
	setIfPresent(&next.Name, in.Name)
	setIfPresent(&next.Description, in.Description)
	if in.Labels != nil {
		next.Labels = apiv1.NormalizeLabels(*in.Labels)
	}
	next.Resources = resources(next.Resources, in.Resources)
	if in.Workload.Set {
		if err := s.setWorkload(&next, in.Workload.Value); err != nil {
			return cur, cur, nil, err
		}
	}
	now := s.now()
	if in.TTLSeconds != nil {
		setTTL(&next, in.TTLSeconds, now)
	}
	if reflect.DeepEqual(cur, next) {
		return cur, cur, nil, nil
	}
	next.Generation, next.ETag, next.UpdatedAt = nextGeneration(next.Generation, now)
	next.Enforcement.Generation++
	next.Enforcement.Enforced = false
	if next.State == apiv1.StateReady || next.State == apiv1.StateFailed || next.State == apiv1.StateUpdating {
		next.State = apiv1.StateUpdating
		next.StateMessage = WorkloadChange(cur, next)
	}
	if err := tx.UpdateEnvironment(ctx, next); err != nil {
		return cur, cur, nil, nameConflict(ctx, tx, err, "environment", next.ProjectID, next.Name)
	}
	bumped, err := invalidateFor(ctx, tx, &cur, &next)
	if err != nil {
		return cur, cur, nil, err
	}
	return cur, next, append(bumped, id), nil
}

// DeleteEnvironment marks an environment deleting, revoking its session
// tokens; the reconciler tears it down.
func (s *Service) DeleteEnvironment(ctx context.Context, c Call, id string) (apiv1.Environment, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Environment], error) {
		cur, err := tx.GetEnvironment(ctx, id)
		if err := writable(c, err, "environment", id, cur.Generation); err != nil {
			return change[apiv1.Environment]{}, err
		}
		if apiv1.StateIsLeaving(cur.State) {
			return change[apiv1.Environment]{}, problem.New(problem.State, "environment %q is already %s", id, cur.State)
		}
		next, reconcile, err := s.markDeleting(ctx, tx, c, cur)
		if err != nil {
			return change[apiv1.Environment]{}, err
		}
		return change[apiv1.Environment]{
			result: next, action: "environment.delete", resource: ref("environment", id), projectID: cur.ProjectID, before: cur, after: next,
			reconcile: reconcile,
		}, nil
	})
}

// markDeleting marks cur deleting and revokes its session tokens; the
// environments to reconcile are it and those its going touches.
func (s *Service) markDeleting(ctx context.Context, tx store.Tx, c Call, cur apiv1.Environment) (apiv1.Environment, []string, error) {
	next := cur
	next.State = apiv1.StateDeleting
	next.StateMessage = ""
	next.UpdatedAt = s.now()
	if err := tx.UpdateEnvironment(ctx, next); err != nil {
		return cur, nil, err
	}
	if err := s.revokeEnvironmentSessions(ctx, tx, c, next); err != nil {
		return cur, nil, err
	}
	bumped, err := invalidateFor(ctx, tx, &cur, &next)
	if err != nil {
		return cur, nil, err
	}
	return next, append(bumped, cur.ID), nil
}

// invalidateFor refuses a change to one environment that breaks an
// assertion, and bumps the enforcement generation of every other
// environment the change touches, and returns them.
func invalidateFor(ctx context.Context, tx store.Tx, before, after *apiv1.Environment) ([]string, error) {
	self := after
	if self == nil {
		self = before
	}
	affected, err := EnvironmentChangeAffects(ctx, tx, before, after)
	if err != nil {
		return nil, err
	}
	// An environment on its way out takes part in no packet: its
	// removal breaks nothing.
	if after != nil && !apiv1.StateIsLeaving(after.State) {
		if err := keepAssertions(ctx, tx, guard{projects: []string{self.ProjectID}, changed: affected, undo: undoEnvironment(before, after)}); err != nil {
			return nil, err
		}
	}
	return Invalidate(ctx, tx, affected, self.ID)
}

func resources(r apiv1.Resources, spec *apiv1.ResourcesSpec) apiv1.Resources {
	if spec == nil {
		return r
	}
	setIfPresent(&r.CPUMillis, spec.CPUMillis)
	setIfPresent(&r.MemoryMB, spec.MemoryMB)
	setIfPresent(&r.DiskGB, spec.DiskGB)
	setIfPresent(&r.MaxProcesses, spec.MaxProcesses)
	return r
}

// setTTL sets ttl_seconds and expires_at from now; 0 or nil removes them.
func setTTL(e *apiv1.Environment, ttl *int64, now time.Time) {
	if ttl == nil || *ttl == 0 {
		e.TTLSeconds, e.ExpiresAt = nil, nil
		return
	}
	t := *ttl
	exp := now.Add(time.Duration(t) * time.Second)
	e.TTLSeconds, e.ExpiresAt = &t, &exp
}
