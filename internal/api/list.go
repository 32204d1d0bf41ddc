package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// parseList reads the list parameters a route accepts (limit, cursor, and
// the filters in allowed), rejecting unknown parameters so a typo in a
// filter never silently lists everything.
func parseList(r *http.Request, allowed ...string) (store.ListQuery, url.Values, error) {
	q, err := query(r)
	if err != nil {
		return store.ListQuery{}, nil, err
	}
	var fe []apiv1.FieldError
	for k := range q {
		if !slices.Contains(allowed, k) {
			fe = append(fe, apiv1.FieldError{Field: k, Message: "is not a query parameter of this route"})
		}
	}
	lq := store.ListQuery{Cursor: q.Get("cursor"), ProjectID: q.Get("project_id"), State: q.Get("state")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxLimit {
			fe = append(fe, apiv1.FieldError{Field: "limit", Message: "must be an integer between 1 and " + strconv.Itoa(store.MaxLimit)})
		}
		lq.Limit = n
	}
	if s := q.Get("label"); s != "" {
		sel, err := apiv1.ParseLabelSelector(s)
		if err != nil {
			fe = append(fe, apiv1.FieldError{Field: "label", Message: err.Error()})
		}
		lq.Labels = sel
	}
	if lq.State != "" && !slices.Contains(apiv1.States, lq.State) {
		fe = append(fe, apiv1.FieldError{Field: "state", Message: "must be one of pending, provisioning, ready, updating, failed, deleting, expired"})
	}
	if fe != nil {
		slices.SortFunc(fe, func(a, b apiv1.FieldError) int {
			if a.Field < b.Field {
				return -1
			}
			return 1
		})
		return lq, q, validationError(fe)
	}
	if lq.Limit == 0 {
		lq.Limit = store.DefaultLimit
	}
	return lq, q, nil
}

// listScoped answers a list the caller may see only part of: an empty page
// when the query lies outside its scope, else the page list returns.
func listScoped[T any](w http.ResponseWriter, r *http.Request, lq store.ListQuery, list func(context.Context, store.ListQuery) ([]T, string, error)) error {
	if !scopeList(r, &lq) {
		writeList[T](w, nil, "")
		return nil
	}
	items, next, err := list(r.Context(), lq)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// scopeList restricts a list to what the caller may see: a project-scoped
// token sees its project only. ok is false when the filter asks for
// another project, whose list is then empty.
func scopeList(r *http.Request, lq *store.ListQuery) (ok bool) {
	p := requestInfoFrom(r.Context()).principal
	if p.OrgWide() {
		return true
	}
	if lq.ProjectID != "" && lq.ProjectID != p.ProjectID {
		return false
	}
	lq.ProjectID = p.ProjectID
	return true
}

// writeList answers a page, never with a null items array.
func writeList[T any](w http.ResponseWriter, items []T, next string) {
	if items == nil {
		items = []T{}
	}
	writeJSON(w, http.StatusOK, apiv1.List[T]{Items: items, NextCursor: next})
}

// writeObject answers one object with its ETag.
func writeObject(w http.ResponseWriter, status int, v any, generation int64) {
	w.Header().Set("ETag", etag(generation))
	writeJSON(w, status, v)
}
