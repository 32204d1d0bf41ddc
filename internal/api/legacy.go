package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// The original design's endpoints, kept working on top of the v1 model.

func (a *API) legacyCreate(w http.ResponseWriter, r *http.Request) error {
	return a.newEnvironment(w, r, func(e apiv1.Environment) any {
		return LegacyCreated{ID: e.ID, Status: statusOf(e)}
	})
}

// legacyConfigure changes description, labels and resources like PATCH,
// and keeps policy's rules as the policy the environment owns: created on
// first use, replaced after, removed when both rule lists are empty.
func (a *API) legacyConfigure(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.EnvironmentConfigure
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	id := idFromPath(r)
	patch := apiv1.EnvironmentPatch{Description: in.Description, Labels: in.Labels, Resources: in.Resources}
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		before, after, ids, err := a.updateEnvironment(ctx, tx, r, id, patch)
		if err != nil {
			return nil, err
		}
		var polBefore, polAfter *apiv1.Policy
		if in.Policy != nil {
			polBefore, polAfter, err = a.configureOwnedPolicy(ctx, tx, after, *in.Policy)
			if err != nil {
				return nil, err
			}
			bumped, err := policyChanged(ctx, tx, polBefore, polAfter)
			if err != nil {
				return nil, err
			}
			ids = append(ids, bumped...)
			// The policy change bumped the environment's enforcement.
			if after, err = tx.GetEnvironment(ctx, id); err != nil {
				return nil, err
			}
		}
		return &mutation{
			status: http.StatusOK, body: after, generation: after.Generation,
			action: "environment.configure", resource: ref("environment", id), projectID: after.ProjectID,
			before:    map[string]any{"environment": before, "policy": polBefore},
			after:     map[string]any{"environment": after, "policy": polAfter},
			reconcile: ids,
		}, nil
	})
}

// configureOwnedPolicy creates, replaces or removes env's owned policy and
// returns it before and after (nil when absent).
func (a *API) configureOwnedPolicy(ctx context.Context, tx store.Tx, env apiv1.Environment, rules apiv1.ConfigurePolicy) (before, after *apiv1.Policy, err error) {
	owned, _, err := tx.ListPolicies(ctx, store.ListQuery{Owner: env.ID, Limit: 1})
	if err != nil {
		return nil, nil, err
	}
	if len(owned) > 0 {
		before = &owned[0]
	}
	rules = rules.Normalize()
	replacing := ""
	if before != nil {
		replacing = before.ID
	}
	if err := checkPolicyRoom(ctx, tx, "policy", env.ProjectID, replacing, policy.OwnedPolicySpec(env, rules)); err != nil {
		return nil, nil, err
	}
	now := a.now().UTC()
	switch {
	case len(rules.Ingress) == 0 && len(rules.Egress) == 0:
		if before != nil {
			err = tx.DeletePolicy(ctx, before.ID)
		}
		return before, nil, err
	case before == nil:
		p := apiv1.Policy{
			ID: control.NewID("pol_"), ProjectID: env.ProjectID, PolicySpec: policy.OwnedPolicySpec(env, rules),
			OwnerEnvironmentID: env.ID, Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: etag(1),
		}
		if err := tx.CreatePolicy(ctx, p); err != nil {
			return nil, nil, ownedConflict(err, p.Name)
		}
		return nil, &p, nil
	}
	p := *before
	p.PolicySpec = policy.OwnedPolicySpec(env, rules)
	p.Generation, p.ETag, p.UpdatedAt = nextGeneration(p.Generation, now)
	if err := tx.UpdatePolicy(ctx, p); err != nil {
		return nil, nil, ownedConflict(err, p.Name)
	}
	return before, &p, nil
}

func ownedConflict(err error, name string) error {
	if errors.Is(err, store.ErrConflict) {
		return problem.Field(problem.Conflict, "policy", "the environment's policy would be named "+name+", which another policy of the project already uses")
	}
	return err
}
