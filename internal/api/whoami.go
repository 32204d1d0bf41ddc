package api

import (
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/version"
)

// permAnyToken is what GET /v1/whoami requires: reading projects is a
// permission every role holds (for the projects it sees), so any valid
// token passes.
var permAnyToken = permProjectRead

// whoami tells the caller who its token is, so that a client can find out
// before doing anything that it holds the wrong token (another project's)
// or talks to something that is not isolationd, and which driver and
// runtime the server runs, so that it can say when nothing is isolated.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) error {
	p := requestInfoFrom(r.Context()).principal
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, apiv1.WhoAmI{
		TokenID: p.TokenID, Name: p.Name, Role: p.Role, ProjectID: p.ProjectID, ExpiresAt: p.ExpiresAt,
		Server: apiv1.ServerInfo{Name: apiv1.ServerName, Version: version.String(), Driver: a.driver.Name(), Runtime: a.runtime},
	})
	return nil
}
