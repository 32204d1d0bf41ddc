// Package workloadspec maps an environment's workload between Terraform
// values and apiv1.WorkloadSpec, for the resource's create and update and
// for the plan-time validator, which must read the object the same way.
//
// The API answers an empty command, args or env as absent and an empty
// working_dir as absent, so they are read back as null; the schema
// rejects the empty forms in configuration (see package validators), so
// that the configuration and the state can never disagree about them.
//
// Reading a value that is not known yet (at plan time) answers known=false
// rather than an error: the validator checks it again once it is known.
package workloadspec

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Attribute names of the workload object, as the schemas and Spec's tags
// spell them.
const (
	AttrImage      = "image"
	AttrCommand    = "command"
	AttrArgs       = "args"
	AttrEnv        = "env"
	AttrWorkingDir = "working_dir"
	AttrRestart    = "restart"
)

// Type is the object type of the workload attribute, in the resource and
// in the data sources.
var Type = types.ObjectType{AttrTypes: map[string]attr.Type{
	AttrImage:      types.StringType,
	AttrCommand:    types.ListType{ElemType: types.StringType},
	AttrArgs:       types.ListType{ElemType: types.StringType},
	AttrEnv:        types.MapType{ElemType: types.StringType},
	AttrWorkingDir: types.StringType,
	AttrRestart:    types.StringType,
}}

// Spec is the workload object.
type Spec struct {
	Image      types.String `tfsdk:"image"`
	Command    types.List   `tfsdk:"command"`
	Args       types.List   `tfsdk:"args"`
	Env        types.Map    `tfsdk:"env"`
	WorkingDir types.String `tfsdk:"working_dir"`
	Restart    types.String `tfsdk:"restart"`
}

// Value returns w as the workload object, null when w is nil. Empty
// lists, maps and strings are null, as the API means them.
func Value(w *apiv1.WorkloadSpec) types.Object {
	if w == nil {
		return types.ObjectNull(Type.AttrTypes)
	}
	spec := Spec{
		Image:      types.StringValue(w.Image),
		Command:    listOrNull(w.Command),
		Args:       listOrNull(w.Args),
		Env:        types.MapNull(types.StringType),
		WorkingDir: types.StringNull(),
		Restart:    types.StringValue(w.Normalize().Restart),
	}
	if len(w.Env) > 0 {
		spec.Env = types.MapValueMust(types.StringType, stringValues(w.Env))
	}
	if w.WorkingDir != "" {
		spec.WorkingDir = types.StringValue(w.WorkingDir)
	}
	o, diags := types.ObjectValueFrom(context.Background(), Type.AttrTypes, spec)
	if diags.HasError() {
		// Spec's tags match Type by construction: a mismatch is a bug any test catches.
		panic(fmt.Sprintf("workloadspec: Spec does not fit its type: %v", diags))
	}
	return o
}

// FromObject returns the spec a workload object holds. known is false
// when the object is null or unknown, or when any part of it is unknown.
func FromObject(ctx context.Context, o types.Object) (w apiv1.WorkloadSpec, known bool, diags diag.Diagnostics) {
	if o.IsNull() || o.IsUnknown() {
		return w, false, nil
	}
	var s Spec
	if diags = o.As(ctx, &s, basetypes.ObjectAsOptions{}); diags.HasError() {
		return w, false, diags
	}
	if s.Image.IsUnknown() || s.WorkingDir.IsUnknown() || s.Restart.IsUnknown() {
		return w, false, diags
	}
	w.Image, w.WorkingDir, w.Restart = s.Image.ValueString(), s.WorkingDir.ValueString(), s.Restart.ValueString()
	var ok bool
	if w.Command, ok = stringList(s.Command.Elements(), s.Command.IsUnknown()); !ok {
		return w, false, diags
	}
	if w.Args, ok = stringList(s.Args.Elements(), s.Args.IsUnknown()); !ok {
		return w, false, diags
	}
	if s.Env.IsUnknown() {
		return w, false, diags
	}
	for k, v := range s.Env.Elements() {
		str, isString := v.(types.String)
		if !isString || str.IsUnknown() {
			return w, false, diags
		}
		if w.Env == nil {
			w.Env = map[string]string{}
		}
		w.Env[k] = str.ValueString()
	}
	return w, true, diags
}

// Changed names the attributes whose values differ between two specs, as
// the API compares them (normalized), in the schema's order.
func Changed(a, b apiv1.WorkloadSpec) []string {
	a, b = a.Normalize(), b.Normalize()
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{AttrImage, a.Image == b.Image},
		{AttrCommand, slices.Equal(a.Command, b.Command)},
		{AttrArgs, slices.Equal(a.Args, b.Args)},
		{AttrEnv, maps.Equal(a.Env, b.Env)},
		{AttrWorkingDir, a.WorkingDir == b.WorkingDir},
		{AttrRestart, a.Restart == b.Restart},
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return out
}

// stringList reads a list's elements; ok is false when the list or an
// element is unknown. A null or empty list is nil.
func stringList(elems []attr.Value, unknown bool) (out []string, ok bool) {
	if unknown {
		return nil, false
	}
	for _, e := range elems {
		s, isString := e.(types.String)
		if !isString || s.IsUnknown() {
			return nil, false
		}
		out = append(out, s.ValueString())
	}
	return out, true
}

func listOrNull(items []string) types.List {
	if len(items) == 0 {
		return types.ListNull(types.StringType)
	}
	elems := make([]attr.Value, len(items))
	for i, s := range items {
		elems[i] = types.StringValue(s)
	}
	return types.ListValueMust(types.StringType, elems)
}

func stringValues(m map[string]string) map[string]attr.Value {
	out := make(map[string]attr.Value, len(m))
	for k, v := range m {
		out[k] = types.StringValue(v)
	}
	return out
}
