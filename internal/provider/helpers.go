package provider

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// labelsValue turns API labels into a map value. An absent or empty map
// becomes an empty map, never null: labels are Optional+Computed with an
// empty default, so "no labels" has one representation in state.
func labelsValue(labels map[string]string) types.Map {
	elems := make(map[string]attr.Value, len(labels))
	for k, v := range labels {
		elems[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

// labelsFromValue reads a known map value into API labels; null is empty.
func labelsFromValue(ctx context.Context, v types.Map, diags *diag.Diagnostics) map[string]string {
	out := map[string]string{}
	if v.IsNull() || v.IsUnknown() {
		return out
	}
	diags.Append(v.ElementsAs(ctx, &out, false)...)
	return out
}

// timeValue renders an API time as RFC 3339 (UTC), or null when absent.
func timeValue(t *time.Time) types.String {
	if t == nil || t.IsZero() {
		return types.StringNull()
	}
	return types.StringValue(t.UTC().Format(time.RFC3339))
}

// addAPIError reports a failed API call as "Unable to <action> <kind>",
// with what the server said and, where the user can do something about
// it, what to do (see conflictHint for a stale ETag).
func addAPIError(diags *diag.Diagnostics, action, kind, id string, err error) {
	detail := conflictHint(err, kind, id)
	switch client.StatusCode(err) {
	case 401:
		detail += "\n\nCheck the provider's token (the token attribute or the " + EnvToken + " environment variable)."
	case 403:
		detail += "\n\nThe token is valid but its role does not allow this; use a token whose role does."
	}
	diags.AddError("Unable to "+action+" "+kind, detail)
}

// addGoneWarning is Read's answer to a 404: the object was deleted outside
// Terraform, so it leaves the state and the next plan creates it again.
func addGoneWarning(diags *diag.Diagnostics, kind, id string) {
	diags.AddWarning(
		"The "+kind+" was deleted outside Terraform",
		"The "+kind+" "+id+" no longer exists, so it is removed from the state. The next plan proposes to create it again.",
	)
}

// objectAsOptions reads an object whose attributes may be unknown (a
// planned object with server-defaulted fields) without failing.
var objectAsOptions = basetypes.ObjectAsOptions{UnhandledNullAsEmpty: true, UnhandledUnknownAsEmpty: true}
