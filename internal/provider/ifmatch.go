package provider

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// Optimistic concurrency. A resource keeps the ETag of the object it last
// read in private state (never shown to the user, nothing to diff) and
// sends it as If-Match when it updates or deletes, so a change someone
// made after Terraform's refresh is never silently overwritten.

// privateETag is the private-state key of the ETag.
const privateETag = "etag"

// privateState is what Read/Create/Update responses and requests share for
// private state: resp.Private and req.Private.
type privateState interface {
	GetKey(ctx context.Context, key string) ([]byte, diag.Diagnostics)
}

// privateStateWriter is resp.Private of a Create, Read or Update response.
type privateStateWriter interface {
	SetKey(ctx context.Context, key string, value []byte) diag.Diagnostics
}

// saveWithETag is how every resource ends Create, Read and Update: the
// model into the state, and the ETag of the object it was made from into
// private state for the next Update's If-Match. A resource that is never
// updated in place (a token) passes "" and keeps none.
func saveWithETag(ctx context.Context, state *tfsdk.State, private privateStateWriter, model any, etag string, diags *diag.Diagnostics) {
	diags.Append(state.Set(ctx, model)...)
	if etag != "" {
		diags.Append(private.SetKey(ctx, privateETag, etagJSON(etag))...)
	}
}

// etagJSON encodes an ETag for private state, which holds JSON values.
func etagJSON(etag string) []byte {
	b, _ := json.Marshal(etag) // a string always encodes
	return b
}

// privateETagOf returns the ETag kept in private state, or "" when there is
// none (state written before ETags were kept): the request then goes
// without If-Match, as Terraform did before.
func privateETagOf(ctx context.Context, private privateState, diags *diag.Diagnostics) string {
	if private == nil {
		return ""
	}
	raw, d := private.GetKey(ctx, privateETag)
	diags.Append(d...)
	if len(raw) == 0 {
		return ""
	}
	var etag string
	if err := json.Unmarshal(raw, &etag); err != nil {
		return ""
	}
	return etag
}

// conflictHint explains an API error to the user; a 412 becomes what it
// means in Terraform's terms and what to do about it.
func conflictHint(err error, kind, id string) string {
	if !client.IsPreconditionFailed(err) {
		return err.Error()
	}
	return fmt.Sprintf("The %s %s was changed outside Terraform after Terraform last read it, so nothing was overwritten. "+
		"Refresh and retry: run `terraform plan -refresh-only` to see what changed, then `terraform apply` again.\n\n"+
		"The server said: %s", kind, id, err)
}
