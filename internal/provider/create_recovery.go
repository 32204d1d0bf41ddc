package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// recoveryTimeout bounds asking the server what became of a create whose
// outcome is unknown. It is a fresh context's: the create's own deadline
// may be what ended it.
const recoveryTimeout = 30 * time.Second

// createOrRecover is every resource's create call. When the create's
// outcome is unknown (its answer was lost and the retries ran out, or the
// deadline fired mid-request), it asks the server whether the create's
// Idempotency-Key was committed and, when it was, returns the object made
// (read with get) and a warning saying so: the caller saves it to the
// state, so it is never orphaned. Any other failure is reported as
// "Unable to create <kind>" and the result is nil.
func createOrRecover[T any](ctx context.Context, c *client.Client, diags *diag.Diagnostics, kind, name string,
	create func(context.Context) (*T, error), get func(context.Context, string) (*T, error)) *T {
	obj, err := create(ctx)
	if err == nil {
		return obj
	}
	key, unknown := client.UnknownOutcome(err)
	if !unknown {
		addCreateError(diags, kind, name, err)
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recoveryTimeout)
	defer cancel()
	rec, recErr := c.IdempotencyKeys().WaitSettled(rctx, key)
	switch {
	case client.IsNotFound(recErr):
		// Never committed: the create did nothing, and retrying is safe.
		addCreateError(diags, kind, name, err)
		return nil
	case recErr != nil:
		diags.AddError("Unable to create "+kind,
			fmt.Sprintf("Whether %s %q was created is unknown: %s\n\nAsking the server about it failed too: %s\n\n"+
				"Before applying again, look for a %s of that name; if there is one, import it with `terraform import`.", kind, name, err, recErr, kind))
		return nil
	}
	obj, getErr := get(rctx, rec.ResourceID)
	if getErr != nil {
		diags.AddError("Unable to create "+kind,
			fmt.Sprintf("The server created %s %q as %s, but its answer was lost and reading it failed: %s\n\n"+
				"Import it: terraform import isolation_%s.NAME %s (NAME being this resource's name in the configuration).", kind, name, rec.ResourceID, getErr, kind, rec.ResourceID))
		return nil
	}
	diags.AddWarning("Recovered a "+kind+" whose create answer was lost",
		fmt.Sprintf("Creating %s %q did not get its answer (%s), but the server had created it, as %s.",
			kind, name, err, rec.ResourceID))
	return obj
}

// addCreateError is "Unable to create <kind>"; a name already taken says,
// once, which object holds it and how to adopt it: the server's own
// detail says the same, so only its request id is kept of it.
func addCreateError(diags *diag.Diagnostics, kind, name string, err error) {
	id := client.ExistingID(err)
	if id == "" {
		addAPIError(diags, "create", kind, name, err)
		return
	}
	var ref string
	if rid := client.RequestID(err); rid != "" {
		ref = " (request id " + rid + ")"
	}
	diags.AddError("Unable to create "+kind,
		fmt.Sprintf("The name %q is taken by the existing %s %s%s. To manage that %s with Terraform, import it:\n\n"+
			"  terraform import isolation_%s.NAME %s\n\n(NAME being this resource's name in the configuration), or give this one a name not already taken.",
			name, kind, id, ref, kind, kind, id))
}

// tokenCreated makes a token read back after a lost answer look like a
// create's answer, which it is, less the secret nobody can know now.
func tokenCreated(get func(context.Context, string) (*apiv1.Token, error)) func(context.Context, string) (*apiv1.TokenCreated, error) {
	return func(ctx context.Context, id string) (*apiv1.TokenCreated, error) {
		t, err := get(ctx, id)
		if err != nil {
			return nil, err
		}
		return &apiv1.TokenCreated{Token: *t}, nil
	}
}
