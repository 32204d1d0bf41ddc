package client

import (
	"context"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Assertions is the /v1/projects/{id}/assertions API of one project.
type Assertions struct{ collection[apiv1.Assertion] }

// Assertions returns the assertions API of project projectID.
func (c *Client) Assertions(projectID string) *Assertions {
	return &Assertions{collection[apiv1.Assertion]{c, "/v1/projects/" + escape(projectID) + "/assertions"}}
}

// Create creates an assertion. One the project's rules do not satisfy
// now, and any write later that would break one, fails with a 422
// (problem type assertion-broken) naming its first failing packet.
func (a *Assertions) Create(ctx context.Context, in apiv1.AssertionCreate) (*apiv1.Assertion, error) {
	return a.create(ctx, in)
}

// Get returns an assertion; IsNotFound(err) when it does not exist.
func (a *Assertions) Get(ctx context.Context, id string) (*apiv1.Assertion, error) {
	return a.get(ctx, id)
}

// List returns every assertion of the project, following all pages.
func (a *Assertions) List(ctx context.Context) ([]apiv1.Assertion, error) {
	return a.list(ctx, ListOptions{})
}

// Delete deletes an assertion. With ifMatch set, it fails with a 412 when
// the assertion changed since that ETag was read.
func (a *Assertions) Delete(ctx context.Context, id, ifMatch string) error {
	return a.delete(ctx, id, ifMatch)
}
