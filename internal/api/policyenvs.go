package api

import (
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// policyEnvironments answers the environments the path's policy selects
// now (of its own project, every page), as the effective policies see it.
func (a *API) policyEnvironments(w http.ResponseWriter, r *http.Request) error {
	p := targetPolicy(r)
	envs, err := listAll(r.Context(), a.store, store.ListQuery{ProjectID: p.ProjectID, Limit: store.MaxLimit})
	if err != nil {
		return err
	}
	selected := []apiv1.Environment{}
	for _, e := range envs {
		if policy.AppliesTo(p, e) {
			selected = append(selected, e)
		}
	}
	writeList(w, selected, "")
	return nil
}
