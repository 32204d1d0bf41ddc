package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
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

// patched is one field of a PATCH, built the same way by every resource's
// toPatch: v (the planned value) when the plan changes the attribute, nil
// (left out, so the server keeps what it has) when it does not or does not
// know it yet. Only what changed is sent, so a field nobody touched is
// never rewritten.
func patched[T any](plan, state attr.Value, v T) *T {
	if plan.IsUnknown() || plan.Equal(state) {
		return nil
	}
	return &v
}

// stringOrNull maps the API's "" (absent) to null.
func stringOrNull(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
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

// readFailed is every resource's Read after its GET: an object on its way
// out (gone) is addGoneWarning and RemoveResource, and so is a 404 once
// c.confirmGone shows the token could have seen it (projectID is the
// object's project). A 404 it cannot confirm (another project's token, say)
// and any other error are "Unable to read <kind>", the state left as it
// is. It reports whether Read should stop.
func readFailed(ctx context.Context, resp *resource.ReadResponse, c *providerClient, kind, id, projectID string, err error, gone bool) bool {
	if !gone && client.IsNotFound(err) {
		if cerr := c.confirmGone(ctx, projectID); cerr != nil {
			addUnconfirmedNotFound(&resp.Diagnostics, kind, id, projectID, cerr)
			return true
		}
		gone = true
	}
	if gone {
		addGoneWarning(&resp.Diagnostics, kind, id)
		resp.State.RemoveResource(ctx)
		return true
	}
	if err != nil {
		addAPIError(&resp.Diagnostics, "read", kind, id, err)
		return true
	}
	return false
}

// addUnconfirmedNotFound is readFailed's error for a 404 that does not
// show the object is gone: Terraform must not forget an object it cannot see.
func addUnconfirmedNotFound(diags *diag.Diagnostics, kind, id, projectID string, why error) {
	var scope *errOutOfScope
	if !errors.As(why, &scope) {
		diags.AddError("Unable to read "+kind, fmt.Sprintf(
			"isolationd answered 404 for %s %s, and checking that the provider's token sees project %s failed: %s\n\n"+
				"The %s stays in the state as it is; run the plan again.", kind, id, projectID, why, kind))
		return
	}
	need := "an editor or viewer token of project " + projectID + ", or an admin or auditor token"
	if projectID == "" {
		need = "an admin or auditor token"
	}
	diags.AddError("Unable to read "+kind, fmt.Sprintf(
		"isolationd answered 404 for %s %s, but %s, so the 404 does not show that the %s was deleted. "+
			"The %s stays in the state as it is.\n\nConfigure the provider with a token that sees it (%s), "+
			"in the token attribute or the %s environment variable.", kind, id, why, kind, kind, need, EnvToken))
}

// projectSeen is the check of every data source given a project_id: a
// project the token cannot see is an error, never an empty answer, since
// the server answers 404 alike for a project that does not exist and one
// outside the token's scope. A null project_id passes.
func projectSeen(ctx context.Context, c *providerClient, diags *diag.Diagnostics, action, kind string, projectID types.String) bool {
	if projectID.IsNull() || projectID.IsUnknown() {
		return true
	}
	id := projectID.ValueString()
	err := c.projectVisible(ctx, id)
	var scope *errOutOfScope
	switch {
	case err == nil:
		return true
	case errors.As(err, &scope) && c.orgWide():
		diags.AddError("Unable to "+action+" "+kind, fmt.Sprintf("Project %s does not exist (isolationd answered 404 for it).", id))
	case errors.As(err, &scope):
		diags.AddError("Unable to "+action+" "+kind, fmt.Sprintf(
			"Project %s does not exist, or is outside the scope of the provider's token: %s. "+
				"isolationd answers 404 alike for both, so the provider does not answer an empty result.", id, scope))
	default:
		addAPIError(diags, action, kind, id, err)
	}
	return false
}

// lookup is the Read of every data source that takes either an id or a
// name: a GET by id, or else the object of that name in the list opts
// selects (names are unique there). On failure it reports "Unable to read
// <kind>" and returns nil.
func lookup[T any](ctx context.Context, diags *diag.Diagnostics, kind string, id, name types.String, opts client.ListOptions,
	get func(context.Context, string) (*T, error), list func(context.Context, client.ListOptions) ([]T, error), nameOf func(*T) string) *T {
	obj, err := lookupErr(ctx, kind, id, name, opts, get, list, nameOf)
	if err != nil {
		addAPIError(diags, "read", kind, id.ValueString()+name.ValueString(), err)
		return nil
	}
	return obj
}

// lookupErr is lookup before the error becomes a diagnostic.
func lookupErr[T any](ctx context.Context, kind string, id, name types.String, opts client.ListOptions,
	get func(context.Context, string) (*T, error), list func(context.Context, client.ListOptions) ([]T, error), nameOf func(*T) string) (*T, error) {
	if !id.IsNull() {
		return get(ctx, id.ValueString())
	}
	all, err := list(ctx, opts)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if nameOf(&all[i]) == name.ValueString() {
			return &all[i], nil
		}
	}
	if opts.ProjectID == "" {
		return nil, fmt.Errorf("no %s is named %q", kind, name.ValueString())
	}
	return nil, fmt.Errorf("project %s has no %s named %q", opts.ProjectID, kind, name.ValueString())
}

// listFrom is a computed list attribute's value: items (strings, or
// structs of the element's tfsdk fields) as a list of the element type of
// like, the attribute as the configuration holds it (null, but typed by
// the schema), so no element type is written twice.
func listFrom(ctx context.Context, like types.List, items any, diags *diag.Diagnostics) types.List {
	l, d := types.ListValueFrom(ctx, like.ElementType(ctx), items)
	diags.Append(d...)
	return l
}

// objectAsOptions reads an object whose attributes may be unknown (a
// planned object with server-defaulted fields) without failing.
var objectAsOptions = basetypes.ObjectAsOptions{UnhandledNullAsEmpty: true, UnhandledUnknownAsEmpty: true}

// patchOrGet is every resource's Update call: the PATCH with If-Match
// etag, so the server refuses it if anything changed since the refresh
// the plan was made from; or, when the patch is empty because the plan
// changes nothing the server holds (only timeouts), a GET, so computed
// values are current. sent says which. On failure it reports "Unable to
// update <kind>" and returns nil.
func patchOrGet[T any, P comparable](ctx context.Context, diags *diag.Diagnostics, kind, id string, patch P, etag string,
	update func(context.Context, string, P, string) (*T, error), get func(context.Context, string) (*T, error)) (obj *T, sent bool) {
	var err error
	if sent = patch != *new(P); sent {
		obj, err = update(ctx, id, patch, etag)
	} else {
		obj, err = get(ctx, id)
	}
	if err != nil {
		addAPIError(diags, "update", kind, id, err)
		return nil, sent
	}
	return obj, sent
}

// listsFrom is the ids and objects attributes of every list data source:
// each item's id and model (from conv), in the server's order, as lists of
// the types ids and objs have in the configuration.
func listsFrom[T, M any](ctx context.Context, ids, objs types.List, items []T, conv func(*T) (string, M), diags *diag.Diagnostics) (types.List, types.List) {
	idv := make([]string, len(items))
	models := make([]M, len(items))
	for i := range items {
		idv[i], models[i] = conv(&items[i])
	}
	return listFrom(ctx, ids, idv, diags), listFrom(ctx, objs, models, diags)
}

// modelSource is a plan, a state or a configuration: what a model is read from.
type modelSource interface {
	Get(ctx context.Context, target any) diag.Diagnostics
}

// prepare is how every Create, Update and Delete and every data source's
// Read begins: they must call the API, so the provider must be configured,
// and they read src (the plan, the state or the configuration) into model.
// It reports whether to go on.
func prepare(ctx context.Context, c *providerClient, diags *diag.Diagnostics, src modelSource, model any) bool {
	return requireClient(c, diags) && readInto(ctx, src, model, diags)
}

// readInto reads src into model and reports whether that worked.
func readInto(ctx context.Context, src modelSource, model any, diags *diag.Diagnostics) bool {
	diags.Append(src.Get(ctx, model)...)
	return !diags.HasError()
}

// within bounds ctx by one operation's timeout: the timeouts block's
// value for it (timeout is plan.Timeouts.Create, say), or def.
func within(ctx context.Context, timeout func(context.Context, time.Duration) (time.Duration, diag.Diagnostics), def time.Duration,
	diags *diag.Diagnostics) (context.Context, context.CancelFunc) {
	d, ds := timeout(ctx, def)
	diags.Append(ds...)
	return context.WithTimeout(ctx, d)
}

// importByName is the ImportState of every resource of a project: an id,
// or PROJECT_NAME/NAME, found as the data sources find names (a project's
// names are unique, and ids never hold a slash).
func importByName[T any](ctx context.Context, c *providerClient, kind string, req resource.ImportStateRequest, resp *resource.ImportStateResponse,
	get func(context.Context, string) (*T, error), list func(context.Context, client.ListOptions) ([]T, error), nameOf, idOf func(*T) string) {
	projectName, name, byName := strings.Cut(req.ID, "/")
	if !byName {
		resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
		return
	}
	prj, err := lookupErr(ctx, "project", types.StringNull(), types.StringValue(projectName), client.ListOptions{},
		c.Projects().Get, c.Projects().List, func(p *apiv1.Project) string { return p.Name })
	var obj *T
	if err == nil {
		obj, err = lookupErr(ctx, kind, types.StringNull(), types.StringValue(name), client.ListOptions{ProjectID: prj.ID}, get, list, nameOf)
	}
	if err != nil {
		resp.Diagnostics.AddError("Unable to import "+kind,
			fmt.Sprintf("%q names the %s %q of the project %q, but %s. Import by id, or by PROJECT_NAME/NAME as the token sees them.",
				req.ID, kind, name, projectName, err))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), idOf(obj))...)
}
