package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/auth"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// authorize is the one authorization step: it finds the project the route
// targets (loading the object its path names, or reading the project_id
// of the body) and asks auth.Decide. Scope comes before role, so a token
// learns nothing about other projects (or, for a session token, other
// environments), not even from a validation error.
func (a *API) authorize(r *http.Request, perm Perm) error {
	info := requestInfoFrom(r.Context())
	info.perm = perm
	projectID, environmentID := "", ""
	ctx := r.Context()
	id := idFromPath(r)
	var err error
	switch perm.Scope {
	case ScopeProject:
		var p apiv1.Project
		p, err = a.store.GetProject(ctx, id)
		projectID, info.target.project = p.ID, p
	case ScopeEnvironment:
		// Encoded: GET serves it as it is, the other routes decode it
		// (targetEnvironment).
		var e store.EnvironmentJSON
		e, err = a.store.GetEnvironmentJSON(ctx, id)
		projectID, environmentID, info.target.environment = e.ProjectID, id, e
	case ScopePolicy:
		var p apiv1.Policy
		p, err = a.store.GetPolicy(ctx, id)
		projectID, info.target.policy = p.ProjectID, p
	case ScopeToken:
		var t store.TokenRecord
		t, err = a.store.GetToken(ctx, id)
		if err == nil && t.RevokedAt != nil {
			// A revoked token is gone as far as the API is concerned.
			err = store.ErrNotFound
		}
		projectID, info.target.token = t.ProjectID, t.Token
		if projectID == "" {
			projectID = auth.OrgScope
		}
	case ScopeBody:
		projectID = bodyProject(r)
	}
	if errors.Is(err, store.ErrNotFound) && perm.Scope == ScopeEnvironment {
		if answer, ok := a.expiredEnvironment(r, perm, id); ok {
			return answer
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		// Audited like an out-of-scope 404, so that the two cost the same.
		a.refused(r, actionNotFound, apiv1.OutcomeFailure, http.StatusNotFound, "no such "+string(perm.Resource))
		return problem.NoSuch(string(perm.Resource), id)
	}
	if err != nil {
		return err
	}
	return a.decide(r, perm, projectID, environmentID)
}

// expiredEnvironment answers a request about environment id, which the
// store no longer holds, when its TTL removed it or the lookup failed
// (ok): 410 saying when, to a caller who could have read it, and for
// anyone else exactly what an environment outside their scope answers.
func (a *API) expiredEnvironment(r *http.Request, perm Perm, id string) (answer error, ok bool) {
	x, ok, err := control.Expired(r.Context(), a.store, id)
	if err != nil {
		return err, true
	}
	if !ok {
		return nil, false
	}
	if err := a.decide(r, perm, x.ProjectID, id); err != nil {
		return err, true
	}
	e := x.Problem()
	a.refused(r, actionNotFound, apiv1.OutcomeFailure, httpStatus(e), "environment expired")
	return e, true
}

// bodyProject is the project_id of the JSON body route read, "" when
// there is none or the body does not decode: the handler's strict
// decoding then answers 400, and the role alone has been checked.
func bodyProject(r *http.Request) string {
	var in struct {
		ProjectID string `json:"project_id"`
	}
	if json.Unmarshal(requestInfoFrom(r.Context()).body, &in) != nil {
		return ""
	}
	return in.ProjectID
}

// decide asks auth.Decide and answers its refusal. An out-of-scope
// object answers exactly as a missing one does.
func (a *API) decide(r *http.Request, perm Perm, projectID, environmentID string) error {
	info := requestInfoFrom(r.Context())
	d := auth.Decide(*info.principal, perm.Permission, projectID, environmentID)
	if d.Allowed() {
		return nil
	}
	reason := d.Reason
	if d.NeededRole != "" {
		// The role comes first: it is what the caller has to act on.
		reason = "requires role " + d.NeededRole + ": " + d.Reason
	}
	err := a.deny(r, d.Refusal, reason)
	if d.Refusal == auth.OutOfScope && perm.Scope == ScopeBody {
		// The body named the project: it is what does not exist.
		return control.NoSuchProject(projectID)
	}
	return err
}

// deny audits a refused request (refused: the answer does not wait for
// the store) and returns the problem to answer with. A refusal for want
// of a valid token first spends from the address's budget
// (anonRateLimit), and is answered 429 once that is spent.
func (a *API) deny(r *http.Request, why auth.Refusal, reason string) *problem.Error {
	if why == auth.Unauthenticated {
		if e := a.anonRateLimit(r, reason); e != nil {
			return e
		}
	}
	e := refusalProblem(r, why, reason)
	a.refused(r, actionDenied, apiv1.OutcomeDenied, httpStatus(e), reason)
	return e
}

// refusalProblem is the answer to each refusal of package auth: its
// problem kind (and so, through kinds, its status) and detail.
func refusalProblem(r *http.Request, why auth.Refusal, reason string) *problem.Error {
	switch why {
	case auth.Unauthenticated:
		return problem.New(problem.Unauthorized, "a valid bearer token is required in the header Authorization: Bearer TOKEN")
	case auth.RateLimited:
		return problem.New(problem.RateLimited, "the token's rate limit is exceeded; retry after the Retry-After delay")
	case auth.OutOfScope:
		return problem.NoSuch(string(requestInfoFrom(r.Context()).perm.Resource), idFromPath(r))
	}
	// Forbidden, and any refusal not named above: the reason says why.
	return problem.New(problem.Forbidden, "%s", reason)
}
