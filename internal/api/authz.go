package api

import (
	"encoding/json"
	"errors"
	"log/slog"
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
// learns nothing about other projects, not even from a validation error.
func (a *API) authorize(r *http.Request, perm Perm) error {
	info := requestInfoFrom(r.Context())
	info.perm = perm
	projectID := ""
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
		projectID, info.target.environment = e.ProjectID, e
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
	if errors.Is(err, store.ErrNotFound) {
		// Audited like an out-of-scope 404, so that the two cost the same.
		a.refused(r, actionNotFound, apiv1.OutcomeFailure, http.StatusNotFound, "no such "+string(perm.Resource))
		return problem.NoSuch(string(perm.Resource), id)
	}
	if err != nil {
		return err
	}
	return a.decide(r, perm, projectID, id)
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

func (a *API) decide(r *http.Request, perm Perm, projectID, id string) error {
	info := requestInfoFrom(r.Context())
	d := auth.Decide(*info.principal, perm.Permission, projectID)
	if d.Allowed {
		return nil
	}
	reason := d.Reason
	if d.NeededRole != "" {
		// The role comes first: it is what the caller has to act on.
		reason = "requires role " + d.NeededRole + ": " + d.Reason
	}
	if err := a.deny(r, d.Status, reason); d.Status != http.StatusNotFound {
		return err
	}
	// Out of scope answers exactly as a missing object does.
	if perm.Scope == ScopeBody {
		return control.NoSuchProject(projectID)
	}
	return problem.NoSuch(string(perm.Resource), id)
}

// deny audits a refused request (see denials: the answer does not wait
// for the store) and returns the problem to answer with.
func (a *API) deny(r *http.Request, status int, reason string) *problem.Error {
	info := requestInfoFrom(r.Context())
	if status == http.StatusUnauthorized {
		if delay, ok := a.anon.allow(info.source.IP, a.now()); !ok {
			reason = "rate limit of unauthenticated requests of the address exceeded: " + reason
			a.refused(r, actionDenied, apiv1.OutcomeDenied, http.StatusTooManyRequests, reason)
			e := problem.New(problem.RateLimited, "too many requests without a valid token from this address; retry after the Retry-After delay")
			e.RetryAfter = delay
			return e
		}
	}
	a.refused(r, actionDenied, apiv1.OutcomeDenied, status, reason)
	switch status {
	case http.StatusUnauthorized:
		return problem.New(problem.Unauthorized, "a valid bearer token is required in the header Authorization: Bearer TOKEN")
	case http.StatusTooManyRequests:
		return problem.New(problem.RateLimited, "the token's rate limit is exceeded; retry after the Retry-After delay")
	case http.StatusNotFound:
		return problem.NoSuch(string(info.perm.Resource), idFromPath(r))
	}
	return problem.New(problem.Forbidden, "%s", reason)
}

// refused hands the audit event of a refused request to the aggregator,
// with every request-derived field cut to MaxFieldBytes.
func (a *API) refused(r *http.Request, action, outcome string, status int, reason string) {
	info := requestInfoFrom(r.Context())
	ev := a.control.Event(a.call(r, status), action, apiv1.ResourceRef{Type: string(info.perm.Resource), ID: truncateField(idFromPath(r))}, "", outcome)
	ev.Reason = truncateField(reason)
	alone := a.denials.record(ev)
	msg := "request denied"
	if action == actionNotFound {
		msg = "object not found"
	}
	// Like the trail, the log says it once a window; the rest at debug.
	level := slog.LevelWarn
	if !alone {
		level = slog.LevelDebug
	}
	info.logger.Log(r.Context(), level, msg, "status", status, "reason", ev.Reason)
}
