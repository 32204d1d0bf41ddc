package control

import (
	"context"
	"reflect"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// CreatePolicy creates a policy and asks for the environments it selects
// to be reconciled.
func (s *Service) CreatePolicy(ctx context.Context, c Call, in apiv1.PolicyCreate) (apiv1.Policy, error) {
	now := s.now()
	p := apiv1.Policy{
		ID: NewID("pol_"), ProjectID: in.ProjectID, PolicySpec: in.PolicySpec.Normalize(),
		Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: apiv1.ETag(1),
	}
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Policy], error) {
		if err := projectExists(ctx, tx, p.ProjectID); err != nil {
			return change[apiv1.Policy]{}, err
		}
		if err := checkPolicyRoom(ctx, tx, "project_id", p.ProjectID, "", p.PolicySpec); err != nil {
			return change[apiv1.Policy]{}, err
		}
		if err := tx.CreatePolicy(ctx, p); err != nil {
			return change[apiv1.Policy]{}, nameConflict(ctx, tx, err, "policy", p.ProjectID, p.Name)
		}
		bumped, err := policyChanged(ctx, tx, nil, &p)
		if err != nil {
			return change[apiv1.Policy]{}, err
		}
		return change[apiv1.Policy]{
			result: p, action: "policy.create", resource: ref("policy", p.ID), projectID: p.ProjectID, after: p,
			reconcile: bumped,
		}, nil
	})
}

// PatchPolicy replaces the fields of in that are present. A policy that
// an environment owns changes only through that environment (Configure).
func (s *Service) PatchPolicy(ctx context.Context, c Call, id string, in apiv1.PolicyPatch) (apiv1.Policy, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Policy], error) {
		cur, err := tx.GetPolicy(ctx, id)
		if err := writable(c, err, "policy", id, cur.Generation); err != nil {
			return change[apiv1.Policy]{}, err
		}
		if cur.OwnerEnvironmentID != "" {
			return change[apiv1.Policy]{}, problem.New(problem.Conflict, "policy %q belongs to environment %q; change it with PUT /environments/%s/configure", id, cur.OwnerEnvironmentID, cur.OwnerEnvironmentID)
		}
		spec, fe := in.Merge(cur.PolicySpec.Normalize())
		if fe != nil {
			return change[apiv1.Policy]{}, problem.Invalid(fe)
		}
		next := cur
		var bumped []string
		if !reflect.DeepEqual(cur.PolicySpec.Normalize(), spec) {
			if err := checkPolicyRoom(ctx, tx, patchedRulesField(in), cur.ProjectID, id, spec); err != nil {
				return change[apiv1.Policy]{}, err
			}
			next.PolicySpec = spec
			next.Generation, next.ETag, next.UpdatedAt = nextGeneration(next.Generation, s.now())
			if err := tx.UpdatePolicy(ctx, next); err != nil {
				return change[apiv1.Policy]{}, nameConflict(ctx, tx, err, "policy", next.ProjectID, next.Name)
			}
			if bumped, err = policyChanged(ctx, tx, &cur, &next); err != nil {
				return change[apiv1.Policy]{}, err
			}
		}
		return change[apiv1.Policy]{
			result: next, action: "policy.update", resource: ref("policy", id), projectID: cur.ProjectID, before: cur, after: next,
			reconcile: bumped,
		}, nil
	})
}

// DeletePolicy deletes a policy and asks for the environments it selected
// to be reconciled.
func (s *Service) DeletePolicy(ctx context.Context, c Call, id string) (apiv1.Policy, error) {
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Policy], error) {
		cur, err := tx.GetPolicy(ctx, id)
		if err := writable(c, err, "policy", id, cur.Generation); err != nil {
			return change[apiv1.Policy]{}, err
		}
		bumped, err := deletePolicy(ctx, tx, cur)
		if err != nil {
			return change[apiv1.Policy]{}, err
		}
		return change[apiv1.Policy]{
			result: cur, action: "policy.delete", resource: ref("policy", id), projectID: cur.ProjectID, before: cur,
			reconcile: bumped,
		}, nil
	})
}

// deletePolicy deletes cur and returns the environments to re-enforce.
func deletePolicy(ctx context.Context, tx store.Tx, cur apiv1.Policy) ([]string, error) {
	if err := tx.DeletePolicy(ctx, cur.ID); err != nil {
		return nil, err
	}
	return policyChanged(ctx, tx, &cur, nil)
}

// policyChanged refuses a policy change that breaks an assertion, and
// re-enforces every environment it touches.
func policyChanged(ctx context.Context, tx store.Tx, before, after *apiv1.Policy) ([]string, error) {
	changed := after
	if changed == nil {
		changed = before
	}
	affected, err := PolicyChangeAffects(ctx, tx, before, after)
	if err != nil {
		return nil, err
	}
	g := guard{projects: []string{changed.ProjectID}, changed: affected, rulesOnly: true, policies: []*apiv1.Policy{before, after}, undo: undoPolicy(before, after)}
	if err := keepAssertions(ctx, tx, g); err != nil {
		return nil, err
	}
	return Invalidate(ctx, tx, affected, "")
}
