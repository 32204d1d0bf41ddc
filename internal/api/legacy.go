package api

import (
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
)

// The original design's endpoints, kept working on top of the v1 model.

func (a *API) legacyCreate(w http.ResponseWriter, r *http.Request) error {
	return a.newEnvironment(w, r, func(e apiv1.Environment) any {
		return LegacyCreated{ID: e.ID, Status: statusOf(e)}
	})
}

// legacyConfigure changes description, labels and resources like PATCH,
// and the rules of the policy the environment owns (control.Configure).
func (a *API) legacyConfigure(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.EnvironmentConfigure
	if err := decodeValid(r, &in); err != nil {
		return err
	}
	return commit(a, w, r, http.StatusOK, func(c control.Call) (apiv1.Environment, error) {
		return a.control.Configure(r.Context(), c, idFromPath(r), in)
	}, environmentAnswer)
}
