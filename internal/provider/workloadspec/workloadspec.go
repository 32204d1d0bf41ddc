// Package workloadspec maps an environment's workload between Terraform
// values and apiv1.WorkloadSpec, for the resource's create and update and
// for the plan-time validator, which must read the object the same way,
// and writes what the runtime observes of it (the workload_status object).
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
	"time"

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
	AttrPorts      = "ports"
)

// PortType is the object type of one of the workload's named ports.
var PortType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"name":     types.StringType,
	"port":     types.Int64Type,
	"protocol": types.StringType,
}}

// Port is one of the workload's named ports.
type Port struct {
	Name     types.String `tfsdk:"name"`
	Port     types.Int64  `tfsdk:"port"`
	Protocol types.String `tfsdk:"protocol"`
}

// Type is the object type of the workload attribute, in the resource and
// in the data sources.
var Type = types.ObjectType{AttrTypes: map[string]attr.Type{
	AttrImage:      types.StringType,
	AttrCommand:    types.ListType{ElemType: types.StringType},
	AttrArgs:       types.ListType{ElemType: types.StringType},
	AttrEnv:        types.MapType{ElemType: types.StringType},
	AttrWorkingDir: types.StringType,
	AttrRestart:    types.StringType,
	AttrPorts:      types.ListType{ElemType: PortType},
}}

// StatusType is the object type of workload_status.
var StatusType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"exit_code":     types.Int64Type,
	"restart_count": types.Int64Type,
	"started_at":    types.StringType,
	"image_digest":  types.StringType,
}}

// Status is the workload_status object.
type Status struct {
	ExitCode     types.Int64  `tfsdk:"exit_code"`
	RestartCount types.Int64  `tfsdk:"restart_count"`
	StartedAt    types.String `tfsdk:"started_at"`
	ImageDigest  types.String `tfsdk:"image_digest"`
}

// Spec is the workload object.
type Spec struct {
	Image      types.String `tfsdk:"image"`
	Command    types.List   `tfsdk:"command"`
	Args       types.List   `tfsdk:"args"`
	Env        types.Map    `tfsdk:"env"`
	WorkingDir types.String `tfsdk:"working_dir"`
	Restart    types.String `tfsdk:"restart"`
	Ports      types.List   `tfsdk:"ports"`
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
		Ports:      types.ListNull(PortType),
	}
	if ports := w.Normalize().Ports; len(ports) > 0 {
		elems := make([]attr.Value, len(ports))
		for i, p := range ports {
			elems[i] = objectValue(PortType, Port{Name: types.StringValue(p.Name), Port: types.Int64Value(int64(p.Port)), Protocol: types.StringValue(p.Protocol)})
		}
		spec.Ports = types.ListValueMust(PortType, elems)
	}
	if len(w.Env) > 0 {
		spec.Env = types.MapValueMust(types.StringType, stringValues(w.Env))
	}
	if w.WorkingDir != "" {
		spec.WorkingDir = types.StringValue(w.WorkingDir)
	}
	return objectValue(Type, spec)
}

// StatusValue returns what the runtime observed of w as the
// workload_status object, null when w is nil. An exit code not seen yet,
// a command not started yet and an image not resolved yet are null.
func StatusValue(w *apiv1.Workload) types.Object {
	if w == nil {
		return types.ObjectNull(StatusType.AttrTypes)
	}
	s := Status{
		ExitCode:     types.Int64Null(),
		RestartCount: types.Int64Value(int64(w.RestartCount)),
		StartedAt:    types.StringNull(),
		ImageDigest:  types.StringNull(),
	}
	if w.ExitCode != nil {
		s.ExitCode = types.Int64Value(int64(*w.ExitCode))
	}
	if w.StartedAt != nil && !w.StartedAt.IsZero() {
		s.StartedAt = types.StringValue(w.StartedAt.UTC().Format(time.RFC3339))
	}
	if w.ImageDigest != "" {
		s.ImageDigest = types.StringValue(w.ImageDigest)
	}
	return objectValue(StatusType, s)
}

// objectValue is types.ObjectValueFrom for this package's structs, whose
// tags match their object types by construction: a mismatch is a bug any
// test catches, so it panics.
func objectValue(t types.ObjectType, v any) types.Object {
	o, diags := types.ObjectValueFrom(context.Background(), t.AttrTypes, v)
	if diags.HasError() {
		panic(fmt.Sprintf("workloadspec: %T does not fit %s: %v", v, t, diags))
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
	if s.Env.IsUnknown() || s.Ports.IsUnknown() {
		return w, false, diags
	}
	var ports []Port
	if diags.Append(s.Ports.ElementsAs(ctx, &ports, false)...); diags.HasError() {
		return w, false, diags
	}
	for _, p := range ports {
		if p.Name.IsUnknown() || p.Port.IsUnknown() || p.Protocol.IsUnknown() {
			return w, false, diags
		}
		w.Ports = append(w.Ports, apiv1.WorkloadPort{Name: p.Name.ValueString(), Port: int(p.Port.ValueInt64()), Protocol: p.Protocol.ValueString()})
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
		{AttrPorts, slices.Equal(a.Ports, b.Ports)},
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
