package api

import (
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

func (a *API) createPolicy(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.PolicyCreate
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	return commit(a, w, r, http.StatusCreated, func(c control.Call) (apiv1.Policy, error) {
		return a.control.CreatePolicy(r.Context(), c, in)
	}, func(p apiv1.Policy) answer {
		return answer{body: p, generation: p.Generation, location: "/v1/policies/" + p.ID, resourceID: p.ID}
	})
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
	return commit(a, w, r, http.StatusOK, func(c control.Call) (apiv1.Policy, error) {
		return a.control.PatchPolicy(r.Context(), c, idFromPath(r), in)
	}, func(p apiv1.Policy) answer { return answer{body: p, generation: p.Generation, resourceID: p.ID} })
}

func (a *API) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	return commit(a, w, r, http.StatusNoContent, func(c control.Call) (apiv1.Policy, error) {
		return a.control.DeletePolicy(r.Context(), c, idFromPath(r))
	}, func(p apiv1.Policy) answer { return answer{resourceID: p.ID} })
}
