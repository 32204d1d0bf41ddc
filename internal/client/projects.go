package client

import (
	"context"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Projects is the /v1/projects API.
type Projects struct{ collection[apiv1.Project] }

// Projects returns the projects API.
func (c *Client) Projects() *Projects {
	return &Projects{collection[apiv1.Project]{c, "/v1/projects"}}
}

// Create creates a project. The request carries an Idempotency-Key, so a
// retry after a lost answer returns the same project instead of a duplicate.
func (p *Projects) Create(ctx context.Context, in apiv1.ProjectCreate) (*apiv1.Project, error) {
	return p.create(ctx, in)
}

// Get returns a project; IsNotFound(err) when it does not exist.
func (p *Projects) Get(ctx context.Context, id string) (*apiv1.Project, error) {
	return p.get(ctx, id)
}

// List returns every project matching opts, following all pages.
func (p *Projects) List(ctx context.Context, opts ListOptions) ([]apiv1.Project, error) {
	return p.list(ctx, opts)
}

// Update replaces the fields present in patch. With ifMatch set (an ETag
// such as `"3"`), the update fails with a 412 (IsPreconditionFailed) when
// the project changed since that ETag was read.
func (p *Projects) Update(ctx context.Context, id string, patch apiv1.ProjectPatch, ifMatch string) (*apiv1.Project, error) {
	return p.update(ctx, id, patch, ifMatch)
}

// Delete deletes a project. A project that still has environments or
// policies is refused with a 409 (IsConflict) that names them; see
// DeleteContents.
func (p *Projects) Delete(ctx context.Context, id, ifMatch string) error {
	return p.delete(ctx, id, ifMatch)
}

// DeleteContents deletes every policy of a project and starts deleting
// every environment of it, in one change, and lists them; wait for each
// environment (Environments().WaitDeleted), then Delete the project.
func (p *Projects) DeleteContents(ctx context.Context, id, ifMatch string) (*apiv1.ProjectContents, error) {
	return call[apiv1.ProjectContents](ctx, p.c, request{method: http.MethodDelete, path: p.item(id) + "/contents", ifMatch: ifMatch})
}
