package api

import (
	"errors"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

// permAnyToken is what GET /v1/whoami and a token's questions about its
// own idempotency keys require: any valid token passes, whatever its
// role (a session token too).
var permAnyToken = Perm{Permission: auth.Permission{Resource: auth.ResourceSelf, Verb: auth.VerbRead}}

// whoami tells the caller who its token is, so that a client can find out
// before doing anything that it holds the wrong token (another project's)
// or talks to something that is not isolationd, and which driver and
// runtime the server runs, so that it can say when nothing is isolated.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) error {
	p := requestInfoFrom(r.Context()).principal
	who := apiv1.WhoAmI{
		TokenID: p.TokenID, Name: p.Name, Role: p.Role, ProjectID: p.ProjectID,
		Developer: p.Developer, EnvironmentID: p.EnvironmentID, ExpiresAt: p.ExpiresAt,
		Server: apiv1.ServerInfo{Name: apiv1.ServerName, Version: version.String(), Driver: a.driver.Name(), Runtime: a.runtime},
	}
	if p.ProjectID != "" {
		// A token that may not read its project (a developer's, a
		// session token) still learns its name, to name environments
		// PROJECT/NAME. The project outlives none of its tokens.
		prj, err := a.store.GetProject(r.Context(), p.ProjectID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		who.ProjectName = prj.Name
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, who)
	return nil
}
