package client

import (
	"context"
	"net/http"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Policies is the /v1/policies API.
type Policies struct{ c *Client }

// Policies returns the policies API.
func (c *Client) Policies() *Policies { return &Policies{c: c} }

// Create creates a policy. The request carries an Idempotency-Key, so a
// retry after a lost answer returns the same policy instead of a duplicate.
func (p *Policies) Create(ctx context.Context, in apiv1.PolicyCreate) (*apiv1.Policy, error) {
	return call[apiv1.Policy](ctx, p.c, request{method: http.MethodPost, path: "/v1/policies", body: in})
}

// Get returns a policy; IsNotFound(err) when it does not exist.
func (p *Policies) Get(ctx context.Context, id string) (*apiv1.Policy, error) {
	return call[apiv1.Policy](ctx, p.c, request{method: http.MethodGet, path: policyPath(id)})
}

// List returns every policy matching opts (project and labels of the
// selected environments are the server's filters), following all pages.
func (p *Policies) List(ctx context.Context, opts ListOptions) ([]apiv1.Policy, error) {
	return listAll[apiv1.Policy](ctx, p.c, "/v1/policies", opts)
}

// Update replaces the fields present in patch, whole (rule lists included).
// With ifMatch set, it fails with a 412 (IsPreconditionFailed) when the
// policy changed since that ETag was read.
func (p *Policies) Update(ctx context.Context, id string, patch apiv1.PolicyPatch, ifMatch string) (*apiv1.Policy, error) {
	return call[apiv1.Policy](ctx, p.c, request{method: http.MethodPatch, path: policyPath(id), body: patch, ifMatch: ifMatch})
}

// Delete deletes a policy. With ifMatch set, it fails with a 412 when the
// policy changed since that ETag was read.
func (p *Policies) Delete(ctx context.Context, id, ifMatch string) error {
	_, err := p.c.do(ctx, request{method: http.MethodDelete, path: policyPath(id), ifMatch: ifMatch}, nil)
	return err
}

func policyPath(id string) string { return "/v1/policies/" + escape(id) }
