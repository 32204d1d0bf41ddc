package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/problem"
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
	fe := checkParams(q, allowed)
	lq := store.ListQuery{Cursor: q.Get("cursor"), ProjectID: q.Get("project_id"), State: q.Get("state"), MaxBytes: apiv1.MaxListPageBytes}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
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
	if q.Has("state") && !slices.Contains(apiv1.States, lq.State) {
		fe = append(fe, apiv1.FieldError{Field: "state", Message: "must be one of pending, provisioning, ready, updating, failed, deleting, expired"})
	}
	if fe != nil {
		slices.SortFunc(fe, func(a, b apiv1.FieldError) int {
			if a.Field < b.Field {
				return -1
			}
			return 1
		})
		return lq, q, problem.Invalid(fe)
	}
	if lq.Limit == 0 {
		lq.Limit = store.DefaultLimit
	}
	return lq, q, nil
}

// checkParams refuses parameters the route does not take, and those given
// twice: taking one of the values would drop the other's filter.
func checkParams(q url.Values, allowed []string) []apiv1.FieldError {
	var fe []apiv1.FieldError
	for k, vs := range q {
		switch {
		case !slices.Contains(allowed, k):
			fe = append(fe, apiv1.FieldError{Field: k, Message: "is not a query parameter of this route"})
		case len(vs) > 1:
			fe = append(fe, apiv1.FieldError{Field: k, Message: "must be given at most once (combine label terms with commas)"})
		}
	}
	return fe
}

// listScoped answers a list the caller may see only part of: the page
// list returns, restricted to the caller's scope.
func listScoped[T any](a *API, w http.ResponseWriter, r *http.Request, lq store.ListQuery, list func(context.Context, store.ListQuery) ([]T, string, error)) error {
	if err := a.scopeList(r, &lq); err != nil {
		return err
	}
	items, next, err := list(r.Context(), lq)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// scopeList restricts a list to what the caller may see: a project-scoped
// token sees its project only. A project_id filter naming a project that
// does not exist, or that the caller may not see, is the 404 that reading
// that project answers: an empty list would pass for "nothing there".
func (a *API) scopeList(r *http.Request, lq *store.ListQuery) error {
	p := requestInfoFrom(r.Context()).principal
	if lq.ProjectID != "" {
		// Read first in both cases, so the two 404s take the same time.
		_, err := a.store.GetProject(r.Context(), lq.ProjectID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !p.Sees(lq.ProjectID)) {
			return control.NoSuchProject(lq.ProjectID)
		}
		if err != nil {
			return err
		}
	}
	if !p.OrgWide() {
		lq.ProjectID = p.ProjectID
	}
	return nil
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
	w.Header().Set("ETag", apiv1.ETag(generation))
	writeJSON(w, status, v)
}
