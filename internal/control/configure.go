package control

import (
	"context"
	"errors"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// The seed routes' configure (PUT /environments/{id}/configure): one call
// changes an environment's description, labels and resources as a patch
// does, and the rules of the policy the environment owns. That owned
// policy is an ordinary policy (OwnerEnvironmentID set, spec from
// policy.OwnedPolicySpec) that only this method writes: PatchPolicy
// refuses it, and the environment's removal takes it along.

// Configure applies in to environment id and, when in has a policy,
// keeps its rules as the policy the environment owns: created on first
// use, replaced after, removed when both rule lists are empty.
func (s *Service) Configure(ctx context.Context, c Call, id string, in apiv1.EnvironmentConfigure) (apiv1.Environment, error) {
	patch := apiv1.EnvironmentPatch{Description: in.Description, Labels: in.Labels, Resources: in.Resources}
	return mutate(ctx, s, c, func(tx store.Tx) (change[apiv1.Environment], error) {
		before, after, ids, err := s.updateEnvironment(ctx, tx, c, id, patch)
		if err != nil {
			return change[apiv1.Environment]{}, err
		}
		var polBefore, polAfter *apiv1.Policy
		if in.Policy != nil {
			polBefore, polAfter, err = s.configureOwnedPolicy(ctx, tx, after, *in.Policy)
			if err != nil {
				return change[apiv1.Environment]{}, err
			}
			bumped, err := policyChanged(ctx, tx, polBefore, polAfter)
			if err != nil {
				return change[apiv1.Environment]{}, err
			}
			ids = append(ids, bumped...)
			// The policy change bumped the environment's enforcement.
			if after, err = tx.GetEnvironment(ctx, id); err != nil {
				return change[apiv1.Environment]{}, err
			}
		}
		return change[apiv1.Environment]{
			result: after, action: "environment.configure", resource: ref("environment", id), projectID: after.ProjectID,
			before:    map[string]any{"environment": before, "policy": polBefore},
			after:     map[string]any{"environment": after, "policy": polAfter},
			reconcile: ids,
		}, nil
	})
}

// configureOwnedPolicy creates, replaces or removes env's owned policy and
// returns it before and after (nil when absent).
func (s *Service) configureOwnedPolicy(ctx context.Context, tx store.Tx, env apiv1.Environment, rules apiv1.ConfigurePolicy) (before, after *apiv1.Policy, err error) {
	if before, err = ownedPolicy(ctx, tx, env.ID); err != nil {
		return nil, nil, err
	}
	rules = rules.Normalize()
	spec := policy.OwnedPolicySpec(env, rules)
	replacing := ""
	if before != nil {
		replacing = before.ID
	}
	if err := checkPolicyRoom(ctx, tx, "policy", env.ProjectID, replacing, spec); err != nil {
		return nil, nil, err
	}
	now := s.now()
	switch {
	case len(rules.Ingress) == 0 && len(rules.Egress) == 0:
		if before != nil {
			err = tx.DeletePolicy(ctx, before.ID)
		}
		return before, nil, err
	case before == nil:
		p := apiv1.Policy{
			ID: NewID("pol_"), ProjectID: env.ProjectID, PolicySpec: spec,
			OwnerEnvironmentID: env.ID, Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: apiv1.ETag(1),
		}
		if err := tx.CreatePolicy(ctx, p); err != nil {
			return nil, nil, ownedConflict(err, p.Name)
		}
		return nil, &p, nil
	}
	p := *before
	p.PolicySpec = spec
	p.Generation, p.ETag, p.UpdatedAt = nextGeneration(p.Generation, now)
	if err := tx.UpdatePolicy(ctx, p); err != nil {
		return nil, nil, ownedConflict(err, p.Name)
	}
	return before, &p, nil
}

// ownedPolicy is the policy environment envID owns, nil when it has none.
func ownedPolicy(ctx context.Context, r store.Reader, envID string) (*apiv1.Policy, error) {
	owned, _, err := r.ListPolicies(ctx, store.ListQuery{Owner: envID, Limit: 1})
	if err != nil || len(owned) == 0 {
		return nil, err
	}
	return &owned[0], nil
}

func ownedConflict(err error, name string) error {
	if errors.Is(err, store.ErrConflict) {
		return problem.Field(problem.Conflict, "policy", "the environment's policy would be named "+name+", which another policy of the project already uses")
	}
	return err
}
