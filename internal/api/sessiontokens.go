package api

import (
	"net/http"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
)

// SessionSecretNote is what an Idempotency-Key replay of a session token's
// minting says in place of the secret, which the server never stores.
const SessionSecretNote = "the secret is shown only once, in the answer to the first request with this Idempotency-Key, and is not stored; if that answer was lost, revoke this session token (DELETE /v1/environments/{id}/session-tokens/{token_id}) and mint another"

// createSessionToken mints a session token of the path's environment from
// the caller's token (control.CreateSessionToken).
func (a *API) createSessionToken(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.SessionTokenCreate
	if err := decode(r, &in); err != nil {
		return err
	}
	envID := idFromPath(r)
	return commit(a, w, r, http.StatusCreated, func(c control.Call) (apiv1.TokenCreated, error) {
		return a.control.CreateSessionToken(r.Context(), c, envID, in)
	}, func(t apiv1.TokenCreated) answer {
		return answer{
			body: t, generation: 1, location: sessionTokenPath(envID, t.ID), resourceID: t.ID,
			replay: apiv1.TokenCreated{Token: t.Token, Note: SessionSecretNote},
		}
	})
}

// deleteSessionToken revokes a session token of the path's environment;
// the token cache forgets it as the revocation commits, before the answer.
func (a *API) deleteSessionToken(w http.ResponseWriter, r *http.Request) error {
	tokenID := strings.TrimSpace(r.PathValue("token_id"))
	return commit(a, w, r, http.StatusNoContent, func(c control.Call) (apiv1.Token, error) {
		return a.control.RevokeSessionToken(r.Context(), c, idFromPath(r), tokenID)
	}, func(t apiv1.Token) answer { return answer{resourceID: t.ID} })
}

func sessionTokenPath(envID, tokenID string) string {
	return "/v1/environments/" + envID + "/session-tokens/" + tokenID
}
