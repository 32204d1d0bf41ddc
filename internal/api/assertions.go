package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// Assertions live under their project, so the project in the path is
// what authorizes them, as a policy's project does.

func (a *API) createAssertion(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.AssertionCreate
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	project := idFromPath(r)
	return commit(a, w, r, http.StatusCreated, func(c control.Call) (apiv1.Assertion, error) {
		return a.control.CreateAssertion(r.Context(), c, project, in)
	}, func(x apiv1.Assertion) answer {
		return answer{body: x, generation: x.Generation, location: assertionPath(x), resourceID: x.ID}
	})
}

func (a *API) listAssertions(w http.ResponseWriter, r *http.Request) error {
	lq, _, err := parseList(r, "limit", "cursor")
	if err != nil {
		return err
	}
	lq.ProjectID = idFromPath(r)
	items, next, err := a.store.ListAssertions(r.Context(), lq)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

func (a *API) getAssertion(w http.ResponseWriter, r *http.Request) error {
	x, err := control.GetAssertion(r.Context(), a.store, idFromPath(r), assertionID(r))
	if errors.Is(err, store.ErrNotFound) {
		return problem.NoSuch("assertion", assertionID(r))
	}
	if err != nil {
		return err
	}
	writeObject(w, http.StatusOK, x, x.Generation)
	return nil
}

func (a *API) deleteAssertion(w http.ResponseWriter, r *http.Request) error {
	return commit(a, w, r, http.StatusNoContent, func(c control.Call) (apiv1.Assertion, error) {
		return a.control.DeleteAssertion(r.Context(), c, idFromPath(r), assertionID(r))
	}, func(x apiv1.Assertion) answer { return answer{resourceID: x.ID} })
}

func assertionID(r *http.Request) string { return strings.TrimSpace(r.PathValue("assertion_id")) }

func assertionPath(x apiv1.Assertion) string {
	return "/v1/projects/" + x.ProjectID + "/assertions/" + x.ID
}
