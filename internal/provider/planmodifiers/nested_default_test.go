package planmodifiers

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

var (
	portType = types.ObjectType{AttrTypes: map[string]attr.Type{"protocol": types.StringType, "port": types.Int64Type}}
	ruleType = types.ObjectType{AttrTypes: map[string]attr.Type{"ports": types.SetType{ElemType: portType}}}
)

func port(protocol types.String, p types.Int64) attr.Value {
	return types.ObjectValueMust(portType.AttrTypes, map[string]attr.Value{"protocol": protocol, "port": p})
}

func rules(portSets ...[]attr.Value) types.Set {
	var elems []attr.Value
	for _, ps := range portSets {
		ports := types.SetNull(portType)
		if ps != nil {
			ports = types.SetValueMust(portType, ps)
		}
		elems = append(elems, types.ObjectValueMust(ruleType.AttrTypes, map[string]attr.Value{"ports": ports}))
	}
	return types.SetValueMust(ruleType, elems)
}

func plan(t *testing.T, config types.Set) types.Set {
	t.Helper()
	req := planmodifier.SetRequest{Path: path.Root("ingress"), ConfigValue: config, PlanValue: types.SetUnknown(ruleType)}
	resp := &planmodifier.SetResponse{PlanValue: req.PlanValue}
	NestedStringDefault("tcp", "ports", "protocol").PlanModifySet(context.Background(), req, resp)
	if resp.Diagnostics.HasError() {
		t.Fatalf("diagnostics: %v", resp.Diagnostics)
	}
	return resp.PlanValue
}

func TestNestedStringDefault_FillsNullProtocolsInEveryRule(t *testing.T) {
	t.Parallel()
	tcp, udp, null := types.StringValue("tcp"), types.StringValue("udp"), types.StringNull()
	config := rules(
		[]attr.Value{port(null, types.Int64Value(5432)), port(udp, types.Int64Value(53)), port(null, types.Int64Value(443))},
		[]attr.Value{port(null, types.Int64Value(22))},
		nil, // a rule without ports allows every port and stays so
	)
	want := rules(
		[]attr.Value{port(tcp, types.Int64Value(5432)), port(udp, types.Int64Value(53)), port(tcp, types.Int64Value(443))},
		[]attr.Value{port(tcp, types.Int64Value(22))},
		nil,
	)
	if got := plan(t, config); !got.Equal(want) {
		t.Errorf("plan =\n%s\nwant\n%s", got, want)
	}
}

func TestNestedStringDefault_KeepsUnknownValuesForTheConfigToDecide(t *testing.T) {
	t.Parallel()
	config := rules([]attr.Value{port(types.StringUnknown(), types.Int64Value(1)), port(types.StringNull(), types.Int64Unknown())})
	want := rules([]attr.Value{port(types.StringUnknown(), types.Int64Value(1)), port(types.StringValue("tcp"), types.Int64Unknown())})
	if got := plan(t, config); !got.Equal(want) {
		t.Errorf("plan =\n%s\nwant\n%s", got, want)
	}
	if got := plan(t, types.SetUnknown(ruleType)); !got.IsUnknown() {
		t.Errorf("an unknown set must stay unknown, got %s", got)
	}
}

func TestNestedStringDefault_CollapsesPortsThatTheDefaultMakesEqual(t *testing.T) {
	t.Parallel()
	config := rules([]attr.Value{port(types.StringNull(), types.Int64Value(443)), port(types.StringValue("tcp"), types.Int64Value(443))})
	want := rules([]attr.Value{port(types.StringValue("tcp"), types.Int64Value(443))})
	if got := plan(t, config); !got.Equal(want) {
		t.Errorf("plan =\n%s\nwant\n%s", got, want)
	}
}
