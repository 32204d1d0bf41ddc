package api

import (
	"context"
	"net/http"
	"reflect"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

func (a *API) createPolicy(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.PolicyCreate
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	now := a.now().UTC()
	p := apiv1.Policy{
		ID: control.NewID("pol_"), ProjectID: in.ProjectID, PolicySpec: in.PolicySpec.Normalize(),
		Generation: 1, CreatedAt: now, UpdatedAt: now, ETag: etag(1),
	}
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		if err := projectExists(ctx, tx, p.ProjectID); err != nil {
			return nil, err
		}
		if err := checkPolicyRoom(ctx, tx, "project_id", p.ProjectID, "", p.PolicySpec); err != nil {
			return nil, err
		}
		if err := tx.CreatePolicy(ctx, p); err != nil {
			return nil, nameConflict(ctx, tx, err, "policy", p.ProjectID, p.Name)
		}
		bumped, err := policyChanged(ctx, tx, nil, &p)
		if err != nil {
			return nil, err
		}
		return &mutation{
			status: http.StatusCreated, body: p, generation: p.Generation, location: "/v1/policies/" + p.ID,
			action: "policy.create", resource: ref("policy", p.ID), projectID: p.ProjectID, after: p,
			reconcile: bumped,
		}, nil
	})
}

// policyChanged re-enforces every environment a policy change touches.
func policyChanged(ctx context.Context, tx store.Tx, before, after *apiv1.Policy) ([]string, error) {
	affected, err := control.PolicyChangeAffects(ctx, tx, before, after)
	if err != nil {
		return nil, err
	}
	return control.Invalidate(ctx, tx, affected, "")
}

func (a *API) listPolicies(w http.ResponseWriter, r *http.Request) error {
	lq, _, err := parseList(r, "limit", "cursor", "project_id", "label")
	if err != nil {
		return err
	}
	if lq.Labels != nil {
		// Policies have no labels of their own: label filters the
		// environment selector (policies that would select such labels).
		lq.Labels = nil
		return problem.Field(problem.Validation, "label", "policies have no labels; filter by project_id")
	}
	return listScoped(a, w, r, lq, a.store.ListPolicies)
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) error {
	p := targetPolicy(r)
	writeObject(w, http.StatusOK, p, p.Generation)
	return nil
}

func (a *API) patchPolicy(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.PolicyPatch
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	id := idFromPath(r)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		cur, err := tx.GetPolicy(ctx, id)
		if err := writable(r, err, "policy", id, cur.Generation); err != nil {
			return nil, err
		}
		if cur.OwnerEnvironmentID != "" {
			return nil, problem.New(problem.Conflict, "policy %q belongs to environment %q; change it with PUT /environments/%s/configure", id, cur.OwnerEnvironmentID, cur.OwnerEnvironmentID)
		}
		spec, fe := in.Merge(cur.PolicySpec.Normalize())
		if fe != nil {
			return nil, problem.Invalid(fe)
		}
		next := cur
		next.PolicySpec = spec
		var bumped []string
		if !reflect.DeepEqual(cur.PolicySpec.Normalize(), spec) {
			if err := checkPolicyRoom(ctx, tx, patchedRulesField(in), cur.ProjectID, id, spec); err != nil {
				return nil, err
			}
			next.Generation, next.ETag, next.UpdatedAt = nextGeneration(next.Generation, a.now().UTC())
			if err := tx.UpdatePolicy(ctx, next); err != nil {
				return nil, nameConflict(ctx, tx, err, "policy", next.ProjectID, next.Name)
			}
			if bumped, err = policyChanged(ctx, tx, &cur, &next); err != nil {
				return nil, err
			}
		} else {
			next = cur
		}
		return &mutation{
			status: http.StatusOK, body: next, generation: next.Generation,
			action: "policy.update", resource: ref("policy", id), projectID: cur.ProjectID, before: cur, after: next,
			reconcile: bumped,
		}, nil
	})
}

func (a *API) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	id := idFromPath(r)
	return a.commit(w, r, func(ctx context.Context, tx store.Tx) (*mutation, error) {
		cur, err := tx.GetPolicy(ctx, id)
		if err := writable(r, err, "policy", id, cur.Generation); err != nil {
			return nil, err
		}
		if err := tx.DeletePolicy(ctx, id); err != nil {
			return nil, err
		}
		bumped, err := policyChanged(ctx, tx, &cur, nil)
		if err != nil {
			return nil, err
		}
		return &mutation{
			status: http.StatusNoContent,
			action: "policy.delete", resource: ref("policy", id), projectID: cur.ProjectID, before: cur,
			reconcile: bumped,
		}, nil
	})
}
