package client

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// ListOptions filters a list. Zero fields do not filter.
type ListOptions struct {
	ProjectID string
	// Labels selects objects carrying every one of these labels.
	Labels map[string]string
	State  string
	// Limit is the page size asked of the server; List still returns every page.
	Limit int
	// Filters are the collection's other filters (the audit log's action,
	// since, outcome...), by query parameter.
	Filters url.Values
}

// query renders opts as the API's list query; labels become the selector
// syntax team=payments,tier=dev, sorted so equal options give equal URLs.
func (o ListOptions) query(cursor string) url.Values {
	q := url.Values{}
	for k, v := range o.Filters {
		q[k] = slices.Clone(v)
	}
	if o.ProjectID != "" {
		q.Set("project_id", o.ProjectID)
	}
	if len(o.Labels) > 0 {
		parts := make([]string, 0, len(o.Labels))
		for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
			parts = append(parts, k+"="+o.Labels[k])
		}
		q.Set("label", strings.Join(parts, ","))
	}
	if o.State != "" {
		q.Set("state", o.State)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return q
}

// listPage fetches one page of a collection.
func listPage[T any](ctx context.Context, c *Client, path string, opts ListOptions, cursor string) (*apiv1.List[T], error) {
	return call[apiv1.List[T]](ctx, c, request{method: http.MethodGet, path: path, query: opts.query(cursor)})
}

// listAll follows next_cursor until the last page.
func listAll[T any](ctx context.Context, c *Client, path string, opts ListOptions) ([]T, error) {
	var all []T
	cursor := ""
	for {
		page, err := listPage[T](ctx, c, path, opts, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" || page.NextCursor == cursor {
			return all, nil
		}
		cursor = page.NextCursor
	}
}

// call is do for the common case: one JSON object in, one out.
func call[T any](ctx context.Context, c *Client, req request) (*T, error) {
	out := new(T)
	meta, err := c.do(ctx, req, out)
	if err != nil {
		return nil, err
	}
	fillETag(out, meta.Header.Get("ETag"))
	return out, nil
}

// fillETag copies the ETag header into an object whose body lacked one, so
// callers can always rely on the object's ETag field.
func fillETag(obj any, etag string) {
	if etag == "" {
		return
	}
	switch o := obj.(type) {
	case *apiv1.Project:
		if o.ETag == "" {
			o.ETag = etag
		}
	case *apiv1.Environment:
		if o.ETag == "" {
			o.ETag = etag
		}
	case *apiv1.Policy:
		if o.ETag == "" {
			o.ETag = etag
		}
	}
}
