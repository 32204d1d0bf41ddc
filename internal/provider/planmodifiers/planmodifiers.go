// Package planmodifiers holds the provider's plan modifiers, each a small
// named type instead of an inline closure, so their rules are documented
// and unit-tested in one place.
package planmodifiers

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/attr"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
)

// Int64UseStateWhenConfigNull keeps the prior state's value of an Optional and
// Computed attribute that the configuration leaves out, instead of showing
// it as "known after apply". It suits values that the server defaults on
// create and that can still be changed later by setting them: leaving them
// out means "keep the current value", which is what the API does with a
// field absent from a PATCH. UseStateForUnknown would be wrong for values
// that change on every update; this one only acts when config is null.
func Int64UseStateWhenConfigNull() planmodifier.Int64 { return useStateWhenConfigNull{} }

// ObjectUseStateWhenConfigNull is Int64UseStateWhenConfigNull for an object.
func ObjectUseStateWhenConfigNull() planmodifier.Object { return useStateWhenConfigNull{} }

type useStateWhenConfigNull struct{}

func (useStateWhenConfigNull) Description(context.Context) string {
	return "When the configuration leaves this value out, the current value is kept."
}

func (m useStateWhenConfigNull) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (useStateWhenConfigNull) PlanModifyInt64(_ context.Context, req planmodifier.Int64Request, resp *planmodifier.Int64Response) {
	if req.ConfigValue.IsNull() && !req.StateValue.IsNull() && !req.StateValue.IsUnknown() {
		resp.PlanValue = req.StateValue
	}
}

func (useStateWhenConfigNull) PlanModifyObject(_ context.Context, req planmodifier.ObjectRequest, resp *planmodifier.ObjectResponse) {
	if req.ConfigValue.IsNull() && !req.StateValue.IsNull() && !req.StateValue.IsUnknown() {
		resp.PlanValue = req.StateValue
	}
}

// StringUseStateUnlessChanged keeps the prior state's value of a Computed
// attribute while the attribute it derives from (dependsOn) is unchanged;
// when that one changes, the value stays "known after apply". An
// environment's expires_at, for example, only moves when ttl_seconds does.
func StringUseStateUnlessChanged(dependsOn path.Path) planmodifier.String {
	return useStateUnlessChanged{dependsOn: dependsOn}
}

type useStateUnlessChanged struct{ dependsOn path.Path }

func (m useStateUnlessChanged) Description(context.Context) string {
	return "Keeps the current value unless " + m.dependsOn.String() + " changes."
}

func (m useStateUnlessChanged) MarkdownDescription(ctx context.Context) string {
	return m.Description(ctx)
}

func (m useStateUnlessChanged) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	// On create there is no state to keep; on destroy there is no plan.
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() || !resp.PlanValue.IsUnknown() {
		return
	}
	var planned, prior attr.Value
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, m.dependsOn, &planned)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, m.dependsOn, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if planned.Equal(prior) {
		resp.PlanValue = req.StateValue
	}
}
