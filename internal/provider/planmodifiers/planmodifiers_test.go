package planmodifiers

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

func TestInt64UseStateWhenConfigNull_KeepsTheCurrentValueOnlyWhenLeftOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		config, state types.Int64
		want          types.Int64
	}{
		{"left out after create: keep", types.Int64Null(), types.Int64Value(2000), types.Int64Value(2000)},
		{"left out on create: server default", types.Int64Null(), types.Int64Null(), types.Int64Unknown()},
		{"set: the configuration wins", types.Int64Value(500), types.Int64Value(2000), types.Int64Unknown()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := planmodifier.Int64Request{ConfigValue: tc.config, StateValue: tc.state, PlanValue: types.Int64Unknown()}
			resp := &planmodifier.Int64Response{PlanValue: req.PlanValue}
			Int64UseStateWhenConfigNull().PlanModifyInt64(context.Background(), req, resp)
			if !resp.PlanValue.Equal(tc.want) {
				t.Fatalf("plan = %s, want %s", resp.PlanValue, tc.want)
			}
		})
	}
}

func TestStringUseStateUnlessChanged_FollowsTheAttributeItDerivesFrom(t *testing.T) {
	t.Parallel()
	s := schema.Schema{Attributes: map[string]schema.Attribute{
		"ttl_seconds": schema.Int64Attribute{Optional: true},
		"expires_at":  schema.StringAttribute{Computed: true},
	}}
	objType := tftypes.Object{AttributeTypes: map[string]tftypes.Type{"ttl_seconds": tftypes.Number, "expires_at": tftypes.String}}
	obj := func(ttl any, expires any) tftypes.Value {
		return tftypes.NewValue(objType, map[string]tftypes.Value{
			"ttl_seconds": tftypes.NewValue(tftypes.Number, ttl),
			"expires_at":  tftypes.NewValue(tftypes.String, expires),
		})
	}
	const at = "2030-01-01T00:00:00Z"
	tests := []struct {
		name        string
		prior, plan tftypes.Value // plan's expires_at is unknown, as the framework marks it
		want        types.String
	}{
		{"ttl unchanged: keep", obj(3600, at), obj(3600, tftypes.UnknownValue), types.StringValue(at)},
		{"ttl changed: known after apply", obj(3600, at), obj(7200, tftypes.UnknownValue), types.StringUnknown()},
		{"ttl removed: known after apply", obj(3600, at), obj(nil, tftypes.UnknownValue), types.StringUnknown()},
		{"create: known after apply", tftypes.NewValue(objType, nil), obj(3600, tftypes.UnknownValue), types.StringUnknown()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := tfsdk.State{Schema: s, Raw: tc.prior}
			var stateValue types.String
			if !tc.prior.IsNull() {
				state.GetAttribute(context.Background(), path.Root("expires_at"), &stateValue)
			}
			req := planmodifier.StringRequest{
				Path:       path.Root("expires_at"),
				Plan:       tfsdk.Plan{Schema: s, Raw: tc.plan},
				State:      state,
				StateValue: stateValue,
				PlanValue:  types.StringUnknown(),
			}
			resp := &planmodifier.StringResponse{PlanValue: req.PlanValue}
			StringUseStateUnlessChanged(path.Root("ttl_seconds")).PlanModifyString(context.Background(), req, resp)
			if resp.Diagnostics.HasError() {
				t.Fatalf("diagnostics: %v", resp.Diagnostics)
			}
			if !resp.PlanValue.Equal(tc.want) {
				t.Fatalf("plan = %s, want %s", resp.PlanValue, tc.want)
			}
		})
	}
}
