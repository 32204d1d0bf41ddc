package api

import (
	"net/http"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

var auditFilters = []string{"limit", "cursor", "project_id", "action", "resource_type", "resource_id", "outcome", "request_id", "since"}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	fe := checkParams(q, auditFilters)
	aq := store.AuditQuery{
		ProjectID: q.Get("project_id"), Action: q.Get("action"), ResourceType: q.Get("resource_type"),
		ResourceID: q.Get("resource_id"), Outcome: q.Get("outcome"), RequestID: q.Get("request_id"),
		Limit: store.DefaultLimit,
	}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > store.MaxLimit {
			fe = append(fe, apiv1.FieldError{Field: "limit", Message: "must be an integer between 1 and " + strconv.Itoa(store.MaxLimit)})
		}
		aq.Limit = n
	}
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			fe = append(fe, apiv1.FieldError{Field: "cursor", Message: "must be a next_cursor value from a previous page"})
		}
		aq.AfterSeq = n
	}
	if q.Has("since") {
		t, err := parseTime(q.Get("since"))
		if err != nil {
			fe = append(fe, apiv1.FieldError{Field: "since", Message: "must be an RFC 3339 time such as 2026-01-02T15:04:05Z"})
		}
		aq.Since = t
	}
	if o := aq.Outcome; q.Has("outcome") && o != apiv1.OutcomeSuccess && o != apiv1.OutcomeDenied && o != apiv1.OutcomeFailure {
		fe = append(fe, apiv1.FieldError{Field: "outcome", Message: "must be one of success, denied, failure"})
	}
	if fe != nil {
		return problem.Invalid(fe)
	}
	// Refusals are appended by the aggregator: let the ones answered
	// before this request land first, so a reader sees what it follows.
	if err := a.denials.sync(r.Context()); err != nil {
		return err
	}
	items, next, err := a.store.ListAudit(r.Context(), aq)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}
