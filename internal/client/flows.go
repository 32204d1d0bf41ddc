package client

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Flows is the flow records' API: /v1/flows and
// /v1/environments/{id}/flows.
type Flows struct{ c *Client }

// Flows returns the flow records' API.
func (c *Client) Flows() *Flows { return &Flows{c} }

// FlowListOptions filters flow records. Zero fields do not filter.
type FlowListOptions struct {
	// ProjectID applies to List only.
	ProjectID string
	Verdict   string
	Direction string
	// Peer is an address: records from or to it.
	Peer         string
	Since, Until time.Time
	// Limit is the page size asked of the server.
	Limit int
}

func (o FlowListOptions) list() ListOptions {
	q := url.Values{}
	for k, v := range map[string]string{"verdict": o.Verdict, "direction": o.Direction, "peer": o.Peer} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, t := range map[string]time.Time{"since": o.Since, "until": o.Until} {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	return ListOptions{ProjectID: o.ProjectID, Limit: o.Limit, Filters: q}
}

// List returns every record opts selects, of every environment the
// token may see, following all pages.
func (f *Flows) List(ctx context.Context, opts FlowListOptions) ([]apiv1.Flow, error) {
	return listAll[apiv1.Flow](ctx, f.c, "/v1/flows", opts.list())
}

// ListEnvironment returns every record of environment envID that opts
// selects (opts.ProjectID aside).
func (f *Flows) ListEnvironment(ctx context.Context, envID string, opts FlowListOptions) ([]apiv1.Flow, error) {
	opts.ProjectID = ""
	return listAll[apiv1.Flow](ctx, f.c, "/v1/environments/"+escape(envID)+"/flows", opts.list())
}

// Page returns one page of environment envID's records (all
// environments' when envID is ""), after the record with id after (0:
// from the first); next is the cursor of the following page, 0 on the
// last. A reader that follows new records keeps the last id it saw.
func (f *Flows) Page(ctx context.Context, envID string, opts FlowListOptions, after int64) (items []apiv1.Flow, next int64, err error) {
	path := "/v1/flows"
	if envID != "" {
		opts.ProjectID = ""
		path = "/v1/environments/" + escape(envID) + "/flows"
	}
	cursor := ""
	if after > 0 {
		cursor = strconv.FormatInt(after, 10)
	}
	page, err := listPage[apiv1.Flow](ctx, f.c, path, opts.list(), cursor)
	if err != nil {
		return nil, 0, err
	}
	if page.NextCursor != "" {
		if next, err = strconv.ParseInt(page.NextCursor, 10, 64); err != nil {
			return nil, 0, err
		}
	}
	return page.Items, next, nil
}
