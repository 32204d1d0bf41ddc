package client

import (
	"context"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Projects is the /v1/projects API.
type Projects struct{ c *Client }

// Projects returns the projects API.
func (c *Client) Projects() *Projects { return &Projects{c: c} }

// Create creates a project. The request carries an Idempotency-Key, so a
// retry after a lost answer returns the same project instead of a duplicate.
func (p *Projects) Create(ctx context.Context, in apiv1.ProjectCreate) (*apiv1.Project, error) {
	return call[apiv1.Project](ctx, p.c, request{method: http.MethodPost, path: "/v1/projects", body: in})
}

// Get returns a project; IsNotFound(err) when it does not exist.
func (p *Projects) Get(ctx context.Context, id string) (*apiv1.Project, error) {
	return call[apiv1.Project](ctx, p.c, request{method: http.MethodGet, path: "/v1/projects/" + escape(id)})
}

// List returns every project matching opts, following all pages.
func (p *Projects) List(ctx context.Context, opts ListOptions) ([]apiv1.Project, error) {
	return listAll[apiv1.Project](ctx, p.c, "/v1/projects", opts)
}

// Update replaces the fields present in patch. With ifMatch set (an ETag
// such as `"3"`), the update fails with a 412 (IsPreconditionFailed) when
// the project changed since that ETag was read.
func (p *Projects) Update(ctx context.Context, id string, patch apiv1.ProjectPatch, ifMatch string) (*apiv1.Project, error) {
	return call[apiv1.Project](ctx, p.c, request{method: http.MethodPatch, path: "/v1/projects/" + escape(id), body: patch, ifMatch: ifMatch})
}

// Delete deletes a project. A project that still has environments or
// policies is refused with a 409 (IsConflict).
func (p *Projects) Delete(ctx context.Context, id, ifMatch string) error {
	_, err := p.c.do(ctx, request{method: http.MethodDelete, path: "/v1/projects/" + escape(id), ifMatch: ifMatch}, nil)
	return err
}
