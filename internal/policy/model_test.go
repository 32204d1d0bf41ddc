package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func expr(key, op string, values ...string) apiv1.SelectorRequirement {
	return apiv1.SelectorRequirement{Key: key, Operator: op, Values: values}
}

func TestSelects_MatchExpressionsHaveKubernetesSemantics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		sel    apiv1.Selector
		labels map[string]string
		want   bool
	}{
		{"in: present with a listed value", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpIn, "x", "y")}}, labels("ns", "y"), true},
		{"in: other value", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpIn, "x", "y")}}, labels("ns", "z"), false},
		{"in: absent", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpIn, "x")}}, labels(), false},
		{"not in: absent", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpNotIn, "x")}}, labels(), true},
		{"not in: listed", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpNotIn, "x")}}, labels("ns", "x"), false},
		{"exists: empty value", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpExists)}}, labels("ns", ""), true},
		{"does not exist", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpDoesNotExist)}}, labels("ns", ""), false},
		{"labels and expressions together", apiv1.Selector{MatchLabels: labels("tier", "db"), MatchExpressions: []apiv1.SelectorRequirement{expr("ns", apiv1.OpDoesNotExist)}}, labels("tier", "db"), true},
		{"unknown operator selects nothing", apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("ns", "in", "x")}}, labels("ns", "x"), false},
	} {
		if got := Selects(tc.sel, tc.labels); got != tc.want {
			t.Errorf("%s: Selects = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestEffectiveAcross_ProjectSelectorsHaveNamespaceSelectorSemantics
// follows Kubernetes: both selectors pick matching environments of
// matching projects, a project selector alone every environment of those
// projects, an environment selector alone stays in the policy's project.
func TestEffectiveAcross_ProjectSelectorsHaveNamespaceSelectorSemantics(t *testing.T) {
	t.Parallel()
	shared := env("s1", "p2", "198.18.9.1", "tier", "db")
	sharedWeb := env("s2", "p2", "198.18.9.2", "tier", "web")
	other := env("o1", "p3", "198.18.8.1", "tier", "db")
	projects := map[string]map[string]string{"p1": labels("team", "ci"), "p2": labels("team", "shared"), "p3": labels()}
	candidates := []apiv1.Environment{web, db, shared, sharedWeb, other}
	shared1 := &apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("team", apiv1.OpIn, "shared")}}
	for _, tc := range []struct {
		name string
		peer apiv1.Peer
		want []string
	}{
		{"environment selector alone stays in the project", apiv1.Peer{EnvironmentSelector: sel("tier", "db")}, []string{"e2"}},
		{"project selector alone picks every environment there", apiv1.Peer{ProjectSelector: shared1}, []string{"s1", "s2"}},
		{"both pick matching environments of matching projects", apiv1.Peer{ProjectSelector: shared1, EnvironmentSelector: sel("tier", "db")}, []string{"s1"}},
		{"an empty project selector picks every project's", apiv1.Peer{ProjectSelector: &apiv1.Selector{}, EnvironmentSelector: sel("tier", "db")}, []string{"e2", "o1", "s1"}},
		{"not in picks projects without the label", apiv1.Peer{ProjectSelector: &apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{expr("team", apiv1.OpNotIn, "shared", "ci")}}}, []string{"o1"}},
	} {
		p := egress(apiv1.EgressRule{To: []apiv1.Peer{tc.peer}})
		eff := EffectiveAcross(web, []apiv1.Policy{p}, candidates, projects)
		var got []string
		for _, e := range eff.Egress[0].Peers[0].Environments {
			got = append(got, e.ID)
			if (e.ProjectID != "") != (e.ID[0] != 'e') {
				t.Errorf("%s: %s has project_id %q", tc.name, e.ID, e.ProjectID)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		ok := Compile(eff).Check(apiv1.CheckRequest{Direction: apiv1.Egress, Address: "198.18.9.1", Port: 1})
		if want := contains(tc.want, "s1"); ok.Allowed != want {
			t.Errorf("%s: check to s1 allowed=%v, want %v", tc.name, ok.Allowed, want)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func withPorts(e apiv1.Environment, ports ...apiv1.WorkloadPort) apiv1.Environment {
	e.Workload = &apiv1.Workload{WorkloadSpec: apiv1.WorkloadSpec{Image: "busybox", Ports: ports}}
	return e
}

// TestEffective_NamedPortsResolvePerDestination: an ingress rule's name
// resolves against the environment itself, an egress rule's against each
// destination, and a destination without the name matches nothing.
func TestEffective_NamedPortsResolvePerDestination(t *testing.T) {
	t.Parallel()
	self := withPorts(web, apiv1.WorkloadPort{Name: "http", Port: 8080, Protocol: "tcp"})
	dbA := withPorts(db, apiv1.WorkloadPort{Name: "sql", Port: 5432, Protocol: "tcp"})
	dbB := withPorts(db6, apiv1.WorkloadPort{Name: "sql", Port: 6432, Protocol: "tcp"}, apiv1.WorkloadPort{Name: "dns", Port: 53, Protocol: "udp"})
	named := func(proto, name string) apiv1.Port { return apiv1.Port{Protocol: proto, PortName: name} }
	policies := []apiv1.Policy{pol("p", "named", both,
		[]apiv1.IngressRule{{Ports: []apiv1.Port{named("tcp", "http")}}, {Ports: []apiv1.Port{named("tcp", "nope")}}},
		[]apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: sel("tier", "db")}, cidr("10.0.0.0/8")}, Ports: []apiv1.Port{tcp(22), named("tcp", "sql")}}},
	)}
	eff := Effective(self, policies, []apiv1.Environment{self, dbA, dbB, pending})
	if len(eff.Ingress) != 1 || *eff.Ingress[0].Ports[0].Port != 8080 {
		t.Fatalf("ingress = %+v, want one rule on 8080 (the undeclared name allows nothing)", eff.Ingress)
	}
	for _, r := range append(eff.Ingress, eff.Egress...) {
		for _, p := range r.Ports {
			if p.PortName != "" || r.PolicyID != "p" {
				t.Errorf("rule %+v keeps a name or lost its policy", r)
			}
		}
	}
	rs := Compile(eff)
	for _, c := range []check{
		in("tcp", "10.1.1.1", 8080, true), in("tcp", "10.1.1.1", 80, false),
		out("tcp", "198.18.0.2", 5432, true), out("tcp", "198.18.0.2", 6432, false),
		out("tcp", "2001:db8::3", 6432, true), out("tcp", "2001:db8::3", 5432, false),
		out("udp", "2001:db8::3", 53, false), out("tcp", "10.0.0.1", 5432, false),
		out("tcp", "10.0.0.1", 22, true), out("tcp", "198.18.0.2", 22, true),
	} {
		got := rs.Check(apiv1.CheckRequest{Direction: c.dir, Protocol: c.proto, Address: c.addr, Port: c.port})
		if got.Allowed != c.allowed {
			t.Errorf("%s %s %s/%d: got %+v, want allowed=%v", c.dir, c.addr, c.proto, c.port, got, c.allowed)
		}
		if got.Allowed && (len(got.Rules) != 1 || got.Rules[0].RuleIndex != 0) {
			t.Errorf("%s %s %s/%d: rules %+v, want rule 0 once", c.dir, c.addr, c.proto, c.port, got.Rules)
		}
	}
}

func TestCheck_DenialsSayWhy(t *testing.T) {
	t.Parallel()
	ssh := pol("x", "x", []string{apiv1.Egress}, nil, []apiv1.EgressRule{{To: []apiv1.Peer{cidr("10.0.0.0/8")}, Ports: []apiv1.Port{tcp(443)}}})
	y := pol("y", "y", []string{apiv1.Egress}, nil, []apiv1.EgressRule{{To: []apiv1.Peer{cidr("192.0.2.0/24")}, Ports: []apiv1.Port{tcp(22)}}})
	closed := pol("z", "z", []string{apiv1.Ingress}, nil, nil)
	for _, tc := range []struct {
		name     string
		policies []apiv1.Policy
		req      apiv1.CheckRequest
		want     string
	}{
		{"nothing selects", []apiv1.Policy{ssh}, apiv1.CheckRequest{Direction: apiv1.Ingress, Address: "10.0.0.1", Port: 22},
			"no policy selects this environment for ingress"},
		{"a rule allows another port to the same peer", []apiv1.Policy{ssh, y}, apiv1.CheckRequest{Direction: apiv1.Egress, Address: "10.0.0.1", Port: 22},
			"policies x and y select it; no rule allows tcp/22 to 10.0.0.1 (rule 0 of x allows tcp/443 to the same peer)"},
		{"a rule allows the port to other peers", []apiv1.Policy{y}, apiv1.CheckRequest{Direction: apiv1.Egress, Address: "10.0.0.1", Port: 22},
			"policy y selects it; no rule allows tcp/22 to 10.0.0.1 (rule 0 of y allows tcp/22, to other peers)"},
		{"selected with no rules", []apiv1.Policy{closed}, apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "sctp", Address: "10.0.0.1", Port: 22},
			"policy z selects it for ingress with no ingress rules, so it allows no ingress"},
	} {
		got := Compile(Effective(web, tc.policies, allEnvs)).Check(tc.req)
		if got.Allowed || got.Reason != tc.want {
			t.Errorf("%s: got %+v,\nwant reason %q", tc.name, got, tc.want)
		}
	}
}

func TestCheck_SCTPPortsAndRanges(t *testing.T) {
	t.Parallel()
	p := ingress(apiv1.IngressRule{Ports: []apiv1.Port{{Protocol: "sctp", Port: ptr(80), EndPort: ptr(81)}}})
	rs := Compile(Effective(web, []apiv1.Policy{p}, allEnvs))
	for _, c := range []check{in("sctp", "10.0.0.1", 80, true), in("sctp", "10.0.0.1", 81, true), in("sctp", "10.0.0.1", 82, false), in("tcp", "10.0.0.1", 80, false)} {
		if got := rs.Check(apiv1.CheckRequest{Direction: c.dir, Protocol: c.proto, Address: c.addr, Port: c.port}); got.Allowed != c.allowed {
			t.Errorf("%s/%d: got %+v, want %v", c.proto, c.port, got, c.allowed)
		}
	}
}

// TestEgressWithoutPeers_NamedPortsResolveInEveryProject: a rule that
// sends anywhere resolves its name against every project's environments,
// as Kubernetes resolves it against every pod, and an environment of
// another project that comes to declare the name touches the policy's.
func TestEgressWithoutPeers_NamedPortsResolveInEveryProject(t *testing.T) {
	t.Parallel()
	p := pol("p", "named-anywhere", []string{apiv1.Egress}, nil,
		[]apiv1.EgressRule{{Ports: []apiv1.Port{{Protocol: "tcp", PortName: "serve-80-tcp"}}}})
	other := withPorts(foreign, apiv1.WorkloadPort{Name: "serve-80-tcp", Port: 80, Protocol: "tcp"})
	projects := map[string]map[string]string{"p1": labels(), "p2": labels("team", "x")}
	rs := Compile(EffectiveAcross(web, []apiv1.Policy{p}, []apiv1.Environment{web, other}, projects))
	for _, c := range []check{out("tcp", "198.18.9.9", 80, true), out("tcp", "198.18.9.9", 81, false), out("tcp", "198.18.0.2", 80, false)} {
		if got := rs.Check(apiv1.CheckRequest{Direction: c.dir, Protocol: c.proto, Address: c.addr, Port: c.port}); got.Allowed != c.allowed {
			t.Errorf("%s %s/%d: %+v, want allowed=%v", c.addr, c.proto, c.port, got, c.allowed)
		}
	}
	if !CrossProject(p) || !SeesChange(p, &foreign, &other, projects) {
		t.Errorf("the policy does not see another project's environment come to declare the name")
	}
}
