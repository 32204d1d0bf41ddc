package validators

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/policyrules"
)

// finding is what a test expects of one diagnostic.
type finding struct {
	Path   string // path.Path.String()
	Detail string
}

// diagFindings lists the path and detail of every diagnostic.
func diagFindings(diags diag.Diagnostics) []finding {
	var out []finding
	for _, d := range diags {
		f := finding{Detail: d.Detail()}
		if wp, ok := d.(diag.DiagnosticWithPath); ok {
			f.Path = wp.Path().String()
		}
		out = append(out, f)
	}
	return out
}

func ptr(i int) *int { return &i }

var rulePeer = path.Root("ingress").AtSetValue(types.StringValue("rule")).AtName("from")

func TestPolicyPeer_ReportsEachErrorOnTheAttributeItNames(t *testing.T) {
	t.Parallel()
	sel := &apiv1.Selector{MatchLabels: map[string]string{"app": "db"}}
	tests := []struct {
		name string
		peer apiv1.Peer
		want func(base path.Path, v attr.Value) []finding
	}{
		{
			name: "valid cidr with except",
			peer: apiv1.Peer{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}},
		},
		{
			name: "valid selector",
			peer: apiv1.Peer{EnvironmentSelector: sel},
		},
		{
			name: "bad cidr",
			peer: apiv1.Peer{CIDR: "10.0.0.0/33"},
			want: func(base path.Path, _ attr.Value) []finding {
				return []finding{{base.AtName("cidr").String(), `ingress.from.cidr must be an IPv4 or IPv6 prefix in CIDR notation, such as 10.0.0.0/8 or 2001:db8::/32, got "10.0.0.0/33".`}}
			},
		},
		{
			name: "except outside cidr",
			peer: apiv1.Peer{CIDR: "10.0.0.0/8", Except: []string{"10.2.0.0/16", "192.168.0.0/16"}},
			want: func(base path.Path, _ attr.Value) []finding {
				return []finding{{base.AtName("except").AtSetValue(types.StringValue("192.168.0.0/16")).String(), `ingress.from.except must be strictly inside cidr 10.0.0.0/8, got "192.168.0.0/16".`}}
			},
		},
		{
			name: "both cidr and selector",
			peer: apiv1.Peer{CIDR: "10.0.0.0/8", EnvironmentSelector: sel},
			want: func(base path.Path, _ attr.Value) []finding {
				return []finding{{base.String(), "ingress.from must set exactly one of cidr, fqdn and the selectors (environment_selector, project_selector or both)."}}
			},
		},
		{
			name: "fqdn on ingress",
			peer: apiv1.Peer{FQDN: "example.com"},
			want: func(base path.Path, _ attr.Value) []finding {
				return []finding{{base.AtName("fqdn").String(), `ingress.from.fqdn is for egress peers only: a name says where traffic goes, not where it comes from, got "example.com".`}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := policyrules.PeerValue(tt.peer)
			base := rulePeer.AtSetValue(v)
			resp := &validator.ObjectResponse{}
			PolicyPeer(false).ValidateObject(context.Background(), validator.ObjectRequest{Path: base, ConfigValue: v}, resp)
			var want []finding
			if tt.want != nil {
				want = tt.want(base, v)
			}
			if diff := cmp.Diff(want, diagFindings(resp.Diagnostics)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyPort_ReportsEachErrorOnTheAttributeItNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		port apiv1.Port
		want []finding // paths relative to the port, details in full
	}{
		{name: "single port", port: apiv1.Port{Port: ptr(5432)}},
		{name: "range", port: apiv1.Port{Protocol: "udp", Port: ptr(1000), EndPort: ptr(2000)}},
		{name: "icmp", port: apiv1.Port{Protocol: "icmp"}},
		{name: "any port", port: apiv1.Port{}},
		{
			name: "port out of range",
			port: apiv1.Port{Port: ptr(70000)},
			want: []finding{{"port", "ingress.ports.port must be between 1 and 65535, got 70000."}},
		},
		{
			name: "port zero",
			port: apiv1.Port{Port: ptr(0)},
			want: []finding{{"port", "ingress.ports.port must be between 1 and 65535, got 0."}},
		},
		{
			name: "end_port below port",
			port: apiv1.Port{Port: ptr(443), EndPort: ptr(80)},
			want: []finding{{"end_port", "ingress.ports.end_port must be at least port (443), got 80."}},
		},
		{
			name: "unknown protocol",
			port: apiv1.Port{Protocol: "gre", Port: ptr(1)},
			want: []finding{{"protocol", `ingress.ports.protocol must be one of tcp, udp, sctp, icmp, got "gre".`}},
		},
		{
			name: "icmp with a port",
			port: apiv1.Port{Protocol: "icmp", Port: ptr(8)},
			want: []finding{{"port", "ingress.ports.port must be absent for icmp, got 8."}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := policyrules.PortValue(tt.port)
			base := path.Root("ingress").AtSetValue(types.StringValue("rule")).AtName("ports").AtSetValue(v)
			resp := &validator.ObjectResponse{}
			PolicyPort().ValidateObject(context.Background(), validator.ObjectRequest{Path: base, ConfigValue: v}, resp)
			var want []finding
			for _, w := range tt.want {
				want = append(want, finding{Path: base.AtName(w.Path).String(), Detail: w.Detail})
			}
			if diff := cmp.Diff(want, diagFindings(resp.Diagnostics)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyPort_SkipsUnknownValues(t *testing.T) {
	t.Parallel()
	v := types.ObjectValueMust(policyrules.PortType.AttrTypes, map[string]attr.Value{
		"protocol":  types.StringValue("tcp"),
		"port":      types.Int64Unknown(),
		"end_port":  types.Int64Value(1),
		"port_name": types.StringNull(),
	})
	resp := &validator.ObjectResponse{}
	PolicyPort().ValidateObject(context.Background(), validator.ObjectRequest{Path: path.Root("p"), ConfigValue: v}, resp)
	if resp.Diagnostics.HasError() {
		t.Errorf("an unknown port must not be judged yet, got %v", resp.Diagnostics)
	}
}

func TestPolicyTypes_RejectsEmptyAndUnknownDirections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		types []string
		want  []finding
	}{
		{name: "both", types: []string{"egress", "ingress"}},
		{name: "empty", types: []string{}, want: []finding{{`policy_types`, "policy_types must not be empty: list ingress, egress or both."}}},
		{name: "unknown direction", types: []string{"ingress", "sideways"}, want: []finding{{`policy_types[Value("sideways")]`, `policy_types must be one of ingress, egress, got "sideways".`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, _ := types.SetValueFrom(context.Background(), types.StringType, tt.types)
			resp := &validator.SetResponse{}
			PolicyTypes().ValidateSet(context.Background(), validator.SetRequest{Path: path.Root("policy_types"), ConfigValue: v}, resp)
			if diff := cmp.Diff(tt.want, diagFindings(resp.Diagnostics)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNotEmptySet_RejectsOnlyAnEmptySet(t *testing.T) {
	t.Parallel()
	check := func(v types.Set) []finding {
		resp := &validator.SetResponse{}
		NotEmptySet("omit ports to allow every port").ValidateSet(context.Background(),
			validator.SetRequest{Path: path.Root("egress").AtSetValue(types.StringValue("r")).AtName("ports"), ConfigValue: v}, resp)
		return diagFindings(resp.Diagnostics)
	}
	if got := check(types.SetNull(types.StringType)); got != nil {
		t.Errorf("null set: got %v, want no error", got)
	}
	if got := check(types.SetValueMust(types.StringType, []attr.Value{types.StringValue("x")})); got != nil {
		t.Errorf("one element: got %v, want no error", got)
	}
	got := check(types.SetValueMust(types.StringType, nil))
	if len(got) != 1 || got[0].Detail != "egress.ports must not be empty: omit ports to allow every port." {
		t.Errorf("empty set: got %v", got)
	}
}

func TestHumanPath_LeavesOutSetElements(t *testing.T) {
	t.Parallel()
	p := path.Root("egress").AtSetValue(types.StringValue("x")).AtName("to").AtSetValue(types.StringValue("y")).
		AtName("environment_selector").AtName("match_labels").AtMapKey("app")
	if got, want := HumanPath(p), `egress.to.environment_selector.match_labels["app"]`; got != want {
		t.Errorf("HumanPath = %s, want %s", got, want)
	}
}

func TestPolicyPortsDistinct_RejectsAPortListedTwiceOnceProtocolDefaults(t *testing.T) {
	t.Parallel()
	ports := func(ps ...apiv1.Port) types.Set {
		var elems []attr.Value
		for _, p := range ps {
			elems = append(elems, policyrules.PortValue(p))
		}
		return types.SetValueMust(policyrules.PortType, elems)
	}
	nullProtocol := func(port int) attr.Value {
		return types.ObjectValueMust(policyrules.PortType.AttrTypes, map[string]attr.Value{
			"protocol": types.StringNull(), "port": types.Int64Value(int64(port)), "end_port": types.Int64Null(), "port_name": types.StringNull(),
		})
	}
	check := func(v types.Set) []finding {
		resp := &validator.SetResponse{}
		PolicyPortsDistinct().ValidateSet(context.Background(), validator.SetRequest{Path: path.Root("ingress").AtSetValue(types.StringValue("r")).AtName("ports"), ConfigValue: v}, resp)
		return diagFindings(resp.Diagnostics)
	}
	if got := check(ports(apiv1.Port{Port: ptr(443)}, apiv1.Port{Protocol: "udp", Port: ptr(443)}, apiv1.Port{Port: ptr(443), EndPort: ptr(444)})); got != nil {
		t.Errorf("distinct ports: got %v", got)
	}
	dup := types.SetValueMust(policyrules.PortType, []attr.Value{nullProtocol(443), policyrules.PortValue(apiv1.Port{Protocol: "tcp", Port: ptr(443)})})
	got := check(dup)
	if len(got) != 1 || got[0].Detail != "ingress.ports lists tcp port 443 twice (protocol defaults to tcp): remove one." {
		t.Errorf("duplicate: got %v", got)
	}
}
