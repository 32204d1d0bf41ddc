package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// flowParams are the query parameters of the flow lists; GET /v1/flows
// takes project_id too.
var flowParams = []string{"limit", "cursor", "verdict", "direction", "peer", "since", "until"}

// listFlows answers GET /v1/flows: the records of every environment the
// caller may see.
func (a *API) listFlows(w http.ResponseWriter, r *http.Request) error {
	fq, projectID, err := parseFlowQuery(r, append([]string{"project_id"}, flowParams...))
	if err != nil {
		return err
	}
	lq := store.ListQuery{ProjectID: projectID}
	if err := a.scopeList(r, &lq); err != nil {
		return err
	}
	if lq.ProjectID != "" {
		fq.ProjectIDs = []string{lq.ProjectID}
	}
	return a.writeFlows(w, r, fq)
}

// listEnvironmentFlows answers GET /v1/environments/{id}/flows; the
// authorize step has answered 404 for an environment outside the
// caller's scope.
func (a *API) listEnvironmentFlows(w http.ResponseWriter, r *http.Request) error {
	fq, _, err := parseFlowQuery(r, flowParams)
	if err != nil {
		return err
	}
	fq.EnvironmentID = r.PathValue("id")
	return a.writeFlows(w, r, fq)
}

func (a *API) writeFlows(w http.ResponseWriter, r *http.Request, fq store.FlowQuery) error {
	items, next, err := a.store.ListFlows(r.Context(), fq)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// parseFlowQuery reads a flow list's parameters, naming each that is
// wrong; it returns project_id apart, for scoping.
func parseFlowQuery(r *http.Request, allowed []string) (store.FlowQuery, string, error) {
	q, err := query(r)
	if err != nil {
		return store.FlowQuery{}, "", err
	}
	fe := checkParams(q, allowed)
	f := apiv1.FlowFilter{Verdict: q.Get("verdict"), Direction: q.Get("direction"), Peer: q.Get("peer")}
	fq := store.FlowQuery{Limit: store.DefaultLimit}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > store.MaxLimit {
			fe = append(fe, apiv1.FieldError{Field: "limit", Message: "must be an integer between 1 and " + strconv.Itoa(store.MaxLimit)})
		}
		fq.Limit = n
	}
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			fe = append(fe, apiv1.FieldError{Field: "cursor", Message: "must be a next_cursor value from a previous page"})
		}
		fq.AfterID = n
	}
	for name, into := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if !q.Has(name) {
			continue
		}
		v, err := parseTime(q.Get(name))
		if err != nil {
			fe = append(fe, apiv1.FieldError{Field: name, Message: "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"})
			continue
		}
		*into = v
	}
	slices.SortFunc(fe, func(a, b apiv1.FieldError) int { return strings.Compare(a.Field, b.Field) })
	if fe == nil {
		fe = f.Validate()
	}
	if fe != nil {
		return fq, "", problem.Invalid(fe)
	}
	fq.Verdict, fq.Direction, fq.Peer, fq.Since, fq.Until = f.Verdict, f.Direction, f.CanonicalPeer(), f.Since, f.Until
	return fq, q.Get("project_id"), nil
}
