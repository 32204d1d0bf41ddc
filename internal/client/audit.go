package client

import (
	"context"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Audit is the /v1/audit-events API: the audit trail, oldest first, for
// admin and auditor tokens.
type Audit struct{ collection[apiv1.AuditEvent] }

// Audit returns the audit trail's API.
func (c *Client) Audit() *Audit {
	return &Audit{collection[apiv1.AuditEvent]{c, "/v1/audit-events"}}
}

// List returns every event opts selects (ProjectID, and the trail's own
// filters in opts.Filters: action, outcome, resource_id, since...),
// following all pages.
func (a *Audit) List(ctx context.Context, opts ListOptions) ([]apiv1.AuditEvent, error) {
	return a.list(ctx, opts)
}
