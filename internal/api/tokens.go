package api

import (
	"net/http"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
)

// SecretNote is what an Idempotency-Key replay of a token creation says in
// place of the secret, which the server never stores.
const SecretNote = "the secret is shown only once, in the answer to the first request with this Idempotency-Key, and is not stored; if that answer was lost, revoke this token (DELETE /v1/tokens/{id}) and create another"

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var in apiv1.TokenCreate
	if err := decode(r, &in); err != nil {
		return expiresAtError(err)
	}
	return commit(a, w, r, http.StatusCreated, func(c control.Call) (apiv1.TokenCreated, error) {
		return a.control.CreateToken(r.Context(), c, in)
	}, func(t apiv1.TokenCreated) answer {
		return answer{
			body: t, generation: 1, location: "/v1/tokens/" + t.ID, resourceID: t.ID,
			replay: apiv1.TokenCreated{Token: t.Token, Note: SecretNote},
		}
	})
}

// expiresAtError names expires_at when decoding failed on a time: JSON
// does not say which field a time.Time's own decoding failed in, and
// expires_at is the only time this body has.
func expiresAtError(err error) error {
	if e, ok := problem.As(err); ok && e.Kind == problem.Malformed && e.Fields == nil &&
		(strings.Contains(e.Detail, "Time.UnmarshalJSON") || strings.Contains(e.Detail, "parsing time")) {
		return problem.Field(problem.Malformed, "expires_at", "must be an RFC 3339 time such as 2030-01-02T15:04:05Z")
	}
	return err
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	lq, _, err := parseList(r, "limit", "cursor", "project_id")
	if err != nil {
		return err
	}
	if err := a.scopeList(r, &lq); err != nil {
		return err
	}
	recs, next, err := a.store.ListTokens(r.Context(), lq)
	if err != nil {
		return err
	}
	// Revoked tokens stay in the store (their hash keeps refusing the
	// secret) but are gone from the API, so a page may come out short.
	items := make([]apiv1.Token, 0, len(recs))
	for _, t := range recs {
		if t.RevokedAt == nil {
			items = append(items, t.Token)
		}
	}
	writeList(w, items, next)
	return nil
}

func (a *API) getToken(w http.ResponseWriter, r *http.Request) error {
	t := targetToken(r)
	writeObject(w, http.StatusOK, t, 1)
	return nil
}

// deleteToken revokes a token (control.RevokeToken); the token cache
// forgets it as the revocation commits (Committed), before the answer is
// sent, so the very next request with it is refused.
func (a *API) deleteToken(w http.ResponseWriter, r *http.Request) error {
	return commit(a, w, r, http.StatusNoContent, func(c control.Call) (apiv1.Token, error) {
		return a.control.RevokeToken(r.Context(), c, idFromPath(r))
	}, func(t apiv1.Token) answer { return answer{resourceID: t.ID} })
}
