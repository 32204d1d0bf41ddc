package policyrules

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func ptr(i int) *int { return &i }

var (
	dbSelector = &apiv1.Selector{MatchLabels: map[string]string{"app": "db"}}
	rulesA     = []apiv1.IngressRule{
		{
			From:  []apiv1.Peer{{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16", "10.2.0.0/16"}}, {EnvironmentSelector: dbSelector}},
			Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(5432)}, {Protocol: "udp", Port: ptr(1000), EndPort: ptr(2000)}},
		},
		{From: []apiv1.Peer{}, Ports: []apiv1.Port{{Protocol: "icmp"}}},
	}
	// rulesB is rulesA with every list in another order.
	rulesB = []apiv1.IngressRule{
		{From: []apiv1.Peer{}, Ports: []apiv1.Port{{Protocol: "icmp"}}},
		{
			From:  []apiv1.Peer{{EnvironmentSelector: dbSelector}, {CIDR: "10.0.0.0/8", Except: []string{"10.2.0.0/16", "10.1.0.0/16"}}},
			Ports: []apiv1.Port{{Protocol: "udp", Port: ptr(1000), EndPort: ptr(2000)}, {Protocol: "tcp", Port: ptr(5432)}},
		},
	}
)

func TestSetValue_OrderOfRulesPeersPortsAndExceptIsNoDifference(t *testing.T) {
	t.Parallel()
	a, b := Ingress.SetValue(IngressRules(rulesA)), Ingress.SetValue(IngressRules(rulesB))
	if !a.Equal(b) {
		t.Errorf("reordered rules are a different value:\n%s\n%s", a, b)
	}
}

func TestSetValue_RoundTripsThroughTheAPIForm(t *testing.T) {
	t.Parallel()
	for _, dir := range []Direction{Ingress, Egress} {
		v := dir.SetValue(IngressRules(rulesA))
		rules, known, diags := dir.Rules(context.Background(), v)
		if diags.HasError() || !known {
			t.Fatalf("%s: known=%v %v", dir.Name, known, diags)
		}
		// Built again from what it read, the value is the same set.
		if again := dir.SetValue(rules); !again.Equal(v) {
			t.Errorf("%s: round trip changed the value:\n%s\n%s", dir.Name, v, again)
		}
		// And the API form it sends is the rules it was given.
		if again := dir.SetValue(IngressRules(APIIngress(rules))); !again.Equal(v) {
			t.Errorf("%s: the API form differs from the rules:\n%s\n%s", dir.Name, v, again)
		}
	}
}

func TestSetValue_EmptyListsAreNullAsInConfiguration(t *testing.T) {
	t.Parallel()
	if v := Ingress.SetValue(nil); !v.IsNull() {
		t.Errorf("no rules = %s, want null", v)
	}
	rule := Ingress.SetValue(IngressRules(rulesA[1:])).Elements()[0].(types.Object).Attributes()
	if !rule["from"].IsNull() {
		t.Errorf("a rule with no peers has from = %s, want null (any peer)", rule["from"])
	}
	peer := PeerValue(apiv1.Peer{CIDR: "10.0.0.0/8"}).Attributes()
	if !peer[AttrExcept].IsNull() || !peer[AttrEnvironmentSelector].IsNull() {
		t.Errorf("a plain CIDR peer = %v, want null except and environment_selector", peer)
	}
	sel := SelectorValue(apiv1.Selector{MatchLabels: map[string]string{}}).Attributes()
	if !sel[AttrMatchLabels].IsNull() {
		t.Errorf("an empty selector has match_labels = %s, want null (every environment)", sel[AttrMatchLabels])
	}
}

func TestPortFromObject_NullProtocolIsTCP(t *testing.T) {
	t.Parallel()
	obj := types.ObjectValueMust(PortType.AttrTypes, map[string]attr.Value{
		AttrProtocol: types.StringNull(), AttrPort: types.Int64Value(443), AttrEndPort: types.Int64Null(), AttrPortName: types.StringNull(),
	})
	got, known, diags := PortFromObject(context.Background(), obj)
	if !known || diags.HasError() {
		t.Fatal("a known port was not read")
	}
	if diff := cmp.Diff(apiv1.Port{Protocol: "tcp", Port: ptr(443)}, got); diff != "" {
		t.Errorf("port (-want +got):\n%s", diff)
	}
}

func TestRules_AnUnknownPartIsNotKnownYetRatherThanAnError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	peer := types.ObjectValueMust(PeerType.AttrTypes, map[string]attr.Value{
		AttrCIDR:                types.StringValue("10.0.0.0/8"),
		AttrExcept:              types.SetValueMust(types.StringType, []attr.Value{types.StringUnknown()}),
		AttrEnvironmentSelector: types.ObjectNull(SelectorType.AttrTypes),
		AttrProjectSelector:     types.ObjectNull(SelectorType.AttrTypes),
		AttrFQDN:                types.StringNull(),
	})
	rule := types.ObjectValueMust(Ingress.RuleType().AttrTypes, map[string]attr.Value{
		"from":    types.SetValueMust(PeerType, []attr.Value{peer}),
		AttrPorts: types.SetNull(PortType),
	})
	for name, set := range map[string]types.Set{
		"unknown set":        types.SetUnknown(Ingress.RuleType()),
		"unknown except":     types.SetValueMust(Ingress.RuleType(), []attr.Value{rule}),
		"unknown rule value": types.SetValueMust(Ingress.RuleType(), []attr.Value{types.ObjectUnknown(Ingress.RuleType().AttrTypes)}),
	} {
		rules, known, diags := Ingress.Rules(ctx, set)
		if known || diags.HasError() || rules != nil {
			t.Errorf("%s: rules=%v known=%v diags=%v, want not known and no error", name, rules, known, diags)
		}
	}
	if rules, known, diags := Ingress.Rules(ctx, types.SetNull(Ingress.RuleType())); !known || diags.HasError() || rules != nil {
		t.Errorf("null set: rules=%v known=%v diags=%v, want no rules, known", rules, known, diags)
	}
}

func TestPeer_ProjectSelectorExpressionsAndNamedPortsRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	peer := apiv1.Peer{
		ProjectSelector: &apiv1.Selector{MatchLabels: map[string]string{}, MatchExpressions: []apiv1.SelectorRequirement{
			{Key: "ns", Operator: apiv1.OpIn, Values: []string{"x", "y"}},
			{Key: "team", Operator: apiv1.OpDoesNotExist},
		}},
		EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"pod": "a"}},
	}
	got, known, diags := PeerFromObject(ctx, PeerValue(peer))
	if !known || diags.HasError() {
		t.Fatalf("a known peer was not read: %v", diags)
	}
	if diff := cmp.Diff(peer, got); diff != "" {
		t.Errorf("peer (-want +got):\n%s", diff)
	}
	port := apiv1.Port{Protocol: apiv1.ProtocolSCTP, PortName: "serve-81"}
	gotPort, known, _ := PortFromObject(ctx, PortValue(port))
	if diff := cmp.Diff(port, gotPort); !known || diff != "" {
		t.Errorf("port (-want +got):\n%s", diff)
	}
}
