package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func ptr[T any](v T) *T { return &v }

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func env(id, project, addr string, kv ...string) apiv1.Environment {
	return apiv1.Environment{
		ID: id, ProjectID: project, Name: "env-" + id, Labels: labels(kv...), State: apiv1.StateReady,
		Enforcement: apiv1.Enforcement{Address: addr, Generation: 7},
	}
}

func sel(kv ...string) *apiv1.Selector { return &apiv1.Selector{MatchLabels: labels(kv...)} }

// The project every test works in: web is the environment under test.
var (
	web      = env("e1", "p1", "198.18.0.1", "tier", "web")
	db       = env("e2", "p1", "198.18.0.2", "tier", "db")
	db6      = env("e3", "p1", "2001:db8::3", "tier", "db")
	pending  = env("e4", "p1", "", "tier", "db")
	foreign  = env("x1", "p2", "198.18.9.9", "tier", "db")
	deleting = func() apiv1.Environment {
		e := env("e5", "p1", "198.18.0.5", "tier", "db")
		e.State = apiv1.StateDeleting
		return e
	}()
	allEnvs = []apiv1.Environment{deleting, foreign, pending, db6, db, web}
)

func pol(id, name string, types []string, in []apiv1.IngressRule, out []apiv1.EgressRule) apiv1.Policy {
	return apiv1.Policy{ID: id, ProjectID: "p1", PolicySpec: apiv1.PolicySpec{
		Name: name, EnvironmentSelector: apiv1.Selector{MatchLabels: labels("tier", "web")},
		PolicyTypes: types, Ingress: in, Egress: out,
	}}
}

var both = []string{apiv1.Ingress, apiv1.Egress}

func ingress(rules ...apiv1.IngressRule) apiv1.Policy {
	return pol("pi", "ingress", []string{apiv1.Ingress}, rules, nil)
}

func egress(rules ...apiv1.EgressRule) apiv1.Policy {
	return pol("pe", "egress", []string{apiv1.Egress}, nil, rules)
}

func cidr(c string, except ...string) apiv1.Peer { return apiv1.Peer{CIDR: c, Except: except} }

func tcp(port int) apiv1.Port { return apiv1.Port{Port: ptr(port)} }

func TestSelects_RequiresEveryMatchLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		sel    apiv1.Selector
		labels map[string]string
		want   bool
	}{
		{"empty selects everything", apiv1.Selector{}, labels("a", "b"), true},
		{"empty selects unlabelled", apiv1.Selector{}, nil, true},
		{"equal", *sel("tier", "web"), labels("tier", "web", "team", "x"), true},
		{"different value", *sel("tier", "web"), labels("tier", "db"), false},
		{"absent key", *sel("tier", "web"), labels("team", "web"), false},
		{"empty value needs the key", *sel("tier", ""), nil, false},
		{"empty value matches empty", *sel("tier", ""), labels("tier", ""), true},
		{"all of several", *sel("tier", "web", "team", "x"), labels("tier", "web"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Selects(tc.sel, tc.labels); got != tc.want {
				t.Errorf("Selects = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEffective_MergesSelectingPoliciesInNameOrderWithResolvedPeers(t *testing.T) {
	t.Parallel()
	zeta := pol("p-z", "zeta", both,
		[]apiv1.IngressRule{{}},
		[]apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: sel("tier", "db")}}, Ports: []apiv1.Port{tcp(5432)}}})
	alphaB := pol("p-b", "alpha", []string{apiv1.Ingress},
		[]apiv1.IngressRule{{From: []apiv1.Peer{cidr("10.0.0.0/8", "10.1.0.0/16")}}, {Ports: []apiv1.Port{{Protocol: "udp"}}}}, nil)
	alphaA := pol("p-a", "alpha", []string{apiv1.Egress}, nil,
		[]apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: sel()}}}})
	// Rules of a direction the policy does not list take no effect (the API
	// rejects them, but the evaluator must not depend on that).
	gated := pol("p-g", "gated", []string{apiv1.Egress}, []apiv1.IngressRule{{}}, nil)
	unselected := pol("p-u", "db-only", both, []apiv1.IngressRule{{}}, nil)
	unselected.EnvironmentSelector = *sel("tier", "db")
	otherProject := pol("p-o", "other", both, []apiv1.IngressRule{{}}, nil)
	otherProject.ProjectID = "p2"
	ownedElsewhere := pol("p-w", "owned-by-db", both, []apiv1.IngressRule{{}}, nil)
	ownedElsewhere.OwnerEnvironmentID = db.ID
	ownedHere := pol("p-h", "owned-by-web", both, nil, []apiv1.EgressRule{{To: []apiv1.Peer{cidr("::/0")}}})
	ownedHere.EnvironmentSelector = *sel("tier", "nothing-has-this")
	ownedHere.OwnerEnvironmentID = web.ID

	got := Effective(web, []apiv1.Policy{zeta, unselected, alphaB, otherProject, gated, ownedElsewhere, alphaA, ownedHere}, allEnvs)

	dbPeers := []apiv1.PeerEnvironment{
		{ID: "e2", Name: "env-e2", Address: "198.18.0.2"},
		{ID: "e3", Name: "env-e3", Address: "2001:db8::3"},
		{ID: "e4", Name: "env-e4"},
	}
	projectPeers := []apiv1.PeerEnvironment{
		{ID: "e1", Name: "env-e1", Address: "198.18.0.1"},
		dbPeers[0], dbPeers[1], dbPeers[2],
	}
	want := apiv1.EffectivePolicy{
		EnvironmentID: "e1",
		Address:       "198.18.0.1",
		Generation:    7,
		Policies: []apiv1.PolicyRef{
			{ID: "p-a", Name: "alpha", PolicyTypes: []string{"egress"}}, {ID: "p-b", Name: "alpha", PolicyTypes: []string{"ingress"}},
			{ID: "p-g", Name: "gated", PolicyTypes: []string{"egress"}},
			{ID: "p-h", Name: "owned-by-web", PolicyTypes: []string{"ingress", "egress"}}, {ID: "p-z", Name: "zeta", PolicyTypes: []string{"ingress", "egress"}},
		},
		Ingress: []apiv1.EffectiveRule{
			{PolicyID: "p-b", PolicyName: "alpha", RuleIndex: 0,
				Peers: []apiv1.EffectivePeer{{Peer: cidr("10.0.0.0/8", "10.1.0.0/16")}}, Ports: []apiv1.Port{}},
			{PolicyID: "p-b", PolicyName: "alpha", RuleIndex: 1,
				Peers: []apiv1.EffectivePeer{}, Ports: []apiv1.Port{{Protocol: "udp"}}},
			{PolicyID: "p-z", PolicyName: "zeta", RuleIndex: 0, Peers: []apiv1.EffectivePeer{}, Ports: []apiv1.Port{}},
		},
		Egress: []apiv1.EffectiveRule{
			{PolicyID: "p-a", PolicyName: "alpha", RuleIndex: 0,
				Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{EnvironmentSelector: sel()}, Environments: projectPeers}}, Ports: []apiv1.Port{}},
			{PolicyID: "p-h", PolicyName: "owned-by-web", RuleIndex: 0,
				Peers: []apiv1.EffectivePeer{{Peer: cidr("::/0")}}, Ports: []apiv1.Port{}},
			{PolicyID: "p-z", PolicyName: "zeta", RuleIndex: 0,
				Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{EnvironmentSelector: sel("tier", "db")}, Environments: dbPeers}},
				Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(5432)}}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEffective_NothingSelectsMeansEmptyListsNotNull(t *testing.T) {
	t.Parallel()
	got := Effective(web, nil, nil)
	want := apiv1.EffectivePolicy{EnvironmentID: "e1", Address: "198.18.0.1", Generation: 7,
		Policies: []apiv1.PolicyRef{}, Ingress: []apiv1.EffectiveRule{}, Egress: []apiv1.EffectiveRule{}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEffective_EnvironmentIsItsOwnPeerEvenWhenNotListed(t *testing.T) {
	t.Parallel()
	p := egress(apiv1.EgressRule{To: []apiv1.Peer{{EnvironmentSelector: sel("tier", "web")}}})
	// A stale copy of web in the list must not win over web itself.
	stale := web
	stale.Enforcement.Address = "198.18.0.99"
	for _, envs := range [][]apiv1.Environment{nil, {stale, db}} {
		got := Effective(web, []apiv1.Policy{p}, envs).Egress[0].Peers[0].Environments
		want := []apiv1.PeerEnvironment{{ID: "e1", Name: "env-e1", Address: "198.18.0.1"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("envs %d: (-want +got):\n%s", len(envs), diff)
		}
	}
}

type check struct {
	dir, proto, addr string
	port             int
	allowed          bool
}

func in(proto, addr string, port int, allowed bool) check {
	return check{apiv1.Ingress, proto, addr, port, allowed}
}

func out(proto, addr string, port int, allowed bool) check {
	return check{apiv1.Egress, proto, addr, port, allowed}
}

func TestEvaluate_Semantics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		policies []apiv1.Policy
		checks   []check
	}{
		{"isolated by default", nil, []check{
			in("tcp", "10.0.0.1", 80, false), out("tcp", "10.0.0.1", 80, false),
			in("icmp", "198.18.0.2", 0, false), out("udp", "2001:db8::1", 53, false),
		}},
		{"ingress type with no rules allows nothing", []apiv1.Policy{pol("p", "deny", both, []apiv1.IngressRule{}, nil)}, []check{
			in("tcp", "10.0.0.1", 80, false), out("tcp", "10.0.0.1", 80, false),
		}},
		{"empty rule allows everything in its direction only", []apiv1.Policy{ingress(apiv1.IngressRule{})}, []check{
			in("tcp", "10.0.0.1", 1, true), in("udp", "2001:db8::1", 65535, true), in("icmp", "0.0.0.0", 0, true),
			out("tcp", "10.0.0.1", 1, false),
		}},
		{"empty rule with empty lists is the same as absent lists", []apiv1.Policy{egress(apiv1.EgressRule{To: []apiv1.Peer{}, Ports: []apiv1.Port{}})}, []check{
			out("tcp", "10.0.0.1", 1, true), out("udp", "::1", 53, true), in("tcp", "10.0.0.1", 1, false),
		}},
		{"peers without ports allow every protocol and port", []apiv1.Policy{ingress(apiv1.IngressRule{From: []apiv1.Peer{cidr("10.0.0.0/8")}})}, []check{
			in("tcp", "10.0.0.1", 1, true), in("udp", "10.0.0.1", 65535, true), in("icmp", "10.0.0.1", 0, true),
			in("tcp", "11.0.0.1", 1, false),
		}},
		{"ports without peers allow any address", []apiv1.Policy{ingress(apiv1.IngressRule{Ports: []apiv1.Port{tcp(443)}})}, []check{
			in("tcp", "10.0.0.1", 443, true), in("tcp", "2001:db8::1", 443, true), in("tcp", "::ffff:1.2.3.4", 443, true),
			in("tcp", "10.0.0.1", 444, false), in("udp", "10.0.0.1", 443, false), in("icmp", "10.0.0.1", 0, false),
		}},
		{"ipv4 cidr with except, edges", []apiv1.Policy{egress(apiv1.EgressRule{To: []apiv1.Peer{cidr("10.0.0.0/8", "10.1.0.0/16", "10.255.255.255/32")}})}, []check{
			out("tcp", "10.0.0.0", 1, true), out("tcp", "10.0.255.255", 1, true),
			out("tcp", "10.1.0.0", 1, false), out("tcp", "10.1.255.255", 1, false),
			out("tcp", "10.2.0.0", 1, true), out("tcp", "10.255.255.254", 1, true), out("tcp", "10.255.255.255", 1, false),
			out("tcp", "9.255.255.255", 1, false), out("tcp", "11.0.0.0", 1, false),
			out("tcp", "::ffff:10.0.0.1", 1, true), out("tcp", "::ffff:10.1.0.1", 1, false),
			out("tcp", "::a00:1", 1, false), // 10.0.0.1's bits, but IPv6
		}},
		{"ipv6 cidr with except, edges", []apiv1.Policy{ingress(apiv1.IngressRule{From: []apiv1.Peer{cidr("2001:db8::/32", "2001:db8:1::/48")}})}, []check{
			in("tcp", "2001:db8::", 1, true), in("tcp", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1, true),
			in("tcp", "2001:db8:1::", 1, false), in("tcp", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", 1, false),
			in("tcp", "2001:db8:2::1", 1, true), in("tcp", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", 1, false),
			in("tcp", "2001:db9::", 1, false), in("tcp", "32.1.13.184", 1, false),
		}},
		{"catch-all prefixes keep to their family", []apiv1.Policy{
			ingress(apiv1.IngressRule{From: []apiv1.Peer{cidr("0.0.0.0/0")}}),
			egress(apiv1.EgressRule{To: []apiv1.Peer{cidr("::/0")}}),
		}, []check{
			in("tcp", "255.255.255.255", 1, true), in("tcp", "::1", 1, false),
			out("tcp", "::", 1, true), out("tcp", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, true), out("tcp", "1.2.3.4", 1, false),
		}},
		{"port range is inclusive", []apiv1.Policy{ingress(apiv1.IngressRule{Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(8000), EndPort: ptr(8080)}}})}, []check{
			in("tcp", "10.0.0.1", 7999, false), in("tcp", "10.0.0.1", 8000, true), in("tcp", "10.0.0.1", 8040, true),
			in("tcp", "10.0.0.1", 8080, true), in("tcp", "10.0.0.1", 8081, false), in("udp", "10.0.0.1", 8000, false),
		}},
		{"full range and range of one", []apiv1.Policy{ingress(apiv1.IngressRule{Ports: []apiv1.Port{
			{Protocol: "udp", Port: ptr(1), EndPort: ptr(65535)}, {Port: ptr(22), EndPort: ptr(22)},
		}})}, []check{
			in("udp", "10.0.0.1", 1, true), in("udp", "10.0.0.1", 65535, true),
			in("tcp", "10.0.0.1", 22, true), in("tcp", "10.0.0.1", 21, false), in("tcp", "10.0.0.1", 23, false),
		}},
		{"protocol without port allows all its ports", []apiv1.Policy{egress(apiv1.EgressRule{Ports: []apiv1.Port{{Protocol: "udp"}}})}, []check{
			out("udp", "10.0.0.1", 1, true), out("udp", "10.0.0.1", 65535, true), out("tcp", "10.0.0.1", 53, false), out("icmp", "10.0.0.1", 0, false),
		}},
		{"icmp ignores port numbers", []apiv1.Policy{egress(apiv1.EgressRule{Ports: []apiv1.Port{{Protocol: "icmp"}}})}, []check{
			out("icmp", "10.0.0.1", 0, true), out("icmp", "10.0.0.1", 8, true), out("tcp", "10.0.0.1", 8, false),
		}},
		{"empty check protocol means tcp", []apiv1.Policy{ingress(apiv1.IngressRule{Ports: []apiv1.Port{tcp(80)}})}, []check{
			in("", "10.0.0.1", 80, true),
		}},
		{"peers and ports must both match", []apiv1.Policy{ingress(apiv1.IngressRule{
			From: []apiv1.Peer{cidr("10.0.0.0/8"), cidr("2001:db8::/32")}, Ports: []apiv1.Port{tcp(80), {Protocol: "udp", Port: ptr(53)}},
		})}, []check{
			in("tcp", "10.0.0.1", 80, true), in("udp", "2001:db8::1", 53, true),
			in("tcp", "10.0.0.1", 53, false), in("tcp", "11.0.0.1", 80, false),
		}},
		{"selector peers match resolved addresses of the same project", []apiv1.Policy{egress(apiv1.EgressRule{To: []apiv1.Peer{{EnvironmentSelector: sel("tier", "db")}}})}, []check{
			out("tcp", "198.18.0.2", 5432, true), out("tcp", "2001:db8::3", 5432, true),
			out("tcp", "::ffff:198.18.0.2", 5432, true), out("tcp", "2001:db8:0:0::3", 5432, true),
			out("tcp", "198.18.9.9", 5432, false), // other project
			out("tcp", "198.18.0.5", 5432, false), // being deleted
			out("tcp", "198.18.0.1", 5432, false), // web itself is not tier=db
			out("tcp", "198.18.0.3", 5432, false), // no one
			in("tcp", "198.18.0.2", 5432, false),  // egress only
			out("tcp", "not-an-ip", 5432, false),  // unparsable matches no peer
			out("tcp", "", 5432, false),           // nor does empty
		}},
		{"empty selector peer is every environment of the project, itself included", []apiv1.Policy{ingress(apiv1.IngressRule{From: []apiv1.Peer{{EnvironmentSelector: sel()}}})}, []check{
			in("tcp", "198.18.0.1", 1, true), in("tcp", "198.18.0.2", 1, true), in("tcp", "2001:db8::3", 1, true),
			in("tcp", "198.18.9.9", 1, false),
		}},
		{"selector that matches no environment allows nothing", []apiv1.Policy{ingress(apiv1.IngressRule{From: []apiv1.Peer{{EnvironmentSelector: sel("tier", "cache")}}})}, []check{
			in("tcp", "198.18.0.2", 1, false), in("tcp", "10.0.0.1", 1, false),
		}},
		{"policy_types gates a direction's rules", []apiv1.Policy{pol("p", "gated", []string{apiv1.Egress}, []apiv1.IngressRule{{}}, nil)}, []check{
			in("tcp", "10.0.0.1", 1, false), out("tcp", "10.0.0.1", 1, false),
		}},
		{"policies not selecting the environment do not apply", []apiv1.Policy{
			func() apiv1.Policy {
				p := ingress(apiv1.IngressRule{})
				p.EnvironmentSelector = *sel("tier", "db")
				return p
			}(),
			func() apiv1.Policy {
				p := ingress(apiv1.IngressRule{})
				p.ProjectID = "p2"
				p.EnvironmentSelector = apiv1.Selector{}
				return p
			}(),
			func() apiv1.Policy { p := ingress(apiv1.IngressRule{}); p.OwnerEnvironmentID = db.ID; return p }(),
		}, []check{
			in("tcp", "10.0.0.1", 1, false),
		}},
		{"an owned policy selects its owner whatever its selector", []apiv1.Policy{
			func() apiv1.Policy {
				p := ingress(apiv1.IngressRule{})
				p.EnvironmentSelector = *sel("tier", "db")
				p.OwnerEnvironmentID = web.ID
				return p
			}(),
		}, []check{
			in("tcp", "10.0.0.1", 1, true),
		}},
		{"policies add up", []apiv1.Policy{
			pol("a", "http", []string{apiv1.Ingress}, []apiv1.IngressRule{{Ports: []apiv1.Port{tcp(80)}}}, nil),
			pol("b", "https", []string{apiv1.Ingress}, []apiv1.IngressRule{{Ports: []apiv1.Port{tcp(443)}}}, nil),
			pol("c", "dns", []string{apiv1.Egress}, nil, []apiv1.EgressRule{{Ports: []apiv1.Port{{Protocol: "udp", Port: ptr(53)}}}}),
		}, []check{
			in("tcp", "10.0.0.1", 80, true), in("tcp", "10.0.0.1", 443, true), in("tcp", "10.0.0.1", 8080, false),
			out("udp", "10.0.0.1", 53, true), out("tcp", "10.0.0.1", 80, false),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rs := Compile(Effective(web, tc.policies, allEnvs))
			for _, c := range tc.checks {
				got := rs.Check(apiv1.CheckRequest{Direction: c.dir, Protocol: c.proto, Address: c.addr, Port: c.port})
				if got.Allowed != c.allowed || (got.Matched != nil) != c.allowed {
					t.Errorf("%s %s %s port %d: got %+v, want allowed=%v", c.dir, c.proto, c.addr, c.port, got, c.allowed)
				}
			}
		})
	}
}

func TestEvaluate_NamesTheFirstMatchingRuleThenEveryOther(t *testing.T) {
	t.Parallel()
	anyRule := []apiv1.IngressRule{{Ports: []apiv1.Port{tcp(22)}}, {}}
	policies := []apiv1.Policy{
		pol("b2", "bravo", []string{apiv1.Ingress}, anyRule, nil),
		pol("c1", "charlie", []string{apiv1.Ingress}, anyRule, nil),
		pol("b1", "bravo", []string{apiv1.Ingress}, anyRule, nil),
		pol("a9", "zulu", []string{apiv1.Ingress}, []apiv1.IngressRule{{Ports: []apiv1.Port{tcp(80)}}}, nil),
	}
	p := Effective(web, policies, allEnvs)
	m := func(id, name string, i int) apiv1.Match {
		return apiv1.Match{PolicyID: id, PolicyName: name, Direction: apiv1.Ingress, RuleIndex: i}
	}
	for _, tc := range []struct {
		port   int
		rules  []apiv1.Match
		reason string
	}{
		{22, []apiv1.Match{m("b1", "bravo", 0), m("b1", "bravo", 1), m("b2", "bravo", 0), m("b2", "bravo", 1), m("c1", "charlie", 0), m("c1", "charlie", 1)},
			"allowed by rule 0 of bravo, rule 1 of bravo, rule 0 of bravo, rule 1 of bravo, rule 0 of charlie and rule 1 of charlie"},
		{80, []apiv1.Match{m("b1", "bravo", 1), m("b2", "bravo", 1), m("c1", "charlie", 1), m("a9", "zulu", 0)},
			"allowed by rule 1 of bravo, rule 1 of bravo, rule 1 of charlie and rule 0 of zulu"},
	} {
		got := Evaluate(p, apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "tcp", Address: "10.0.0.1", Port: tc.port})
		if diff := cmp.Diff(apiv1.CheckResult{Allowed: true, Matched: &tc.rules[0], Rules: tc.rules, Reason: tc.reason}, got); diff != "" {
			t.Errorf("port %d (-want +got):\n%s", tc.port, diff)
		}
	}
	got := Evaluate(p, apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: "10.0.0.1", Port: 80})
	if diff := cmp.Diff(apiv1.CheckResult{Reason: "no policy selects this environment for egress"}, got); diff != "" {
		t.Errorf("denied egress (-want +got):\n%s", diff)
	}
}

func TestCompile_UnreadableEntriesNeverWidenWhatIsAllowed(t *testing.T) {
	t.Parallel()
	p := apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{{
		PolicyID: "x",
		Peers: []apiv1.EffectivePeer{
			{Peer: cidr("junk")},
			{Peer: cidr("10.0.0.0/8", "junk")},
			{Peer: apiv1.Peer{}},
			{Peer: apiv1.Peer{EnvironmentSelector: sel()}, Environments: []apiv1.PeerEnvironment{{ID: "e", Address: "junk"}, {ID: "f"}}},
		},
	}}}
	for _, addr := range []string{"10.0.0.1", "0.0.0.0", "::", "junk", ""} {
		if got := Evaluate(p, apiv1.CheckRequest{Direction: apiv1.Ingress, Address: addr, Port: 1}); got.Allowed {
			t.Errorf("%q allowed by %+v", addr, got.Matched)
		}
	}
	if got := Evaluate(p, apiv1.CheckRequest{Direction: "sideways", Address: "10.0.0.1", Port: 1}); got.Allowed {
		t.Errorf("unknown direction allowed")
	}
}

func TestSelectedEnvironments(t *testing.T) {
	t.Parallel()
	dbPolicy := pol("p", "db", both, nil, nil)
	dbPolicy.EnvironmentSelector = *sel("tier", "db")
	all := pol("p", "all", both, nil, nil)
	all.EnvironmentSelector = apiv1.Selector{}
	owned := pol("p", "owned", both, nil, nil)
	owned.OwnerEnvironmentID = db.ID
	for _, tc := range []struct {
		p    apiv1.Policy
		want []string
	}{
		{dbPolicy, []string{"e2", "e3", "e4", "e5"}},
		{all, []string{"e1", "e2", "e3", "e4", "e5"}},
		{owned, []string{"e2"}},
	} {
		if diff := cmp.Diff(tc.want, SelectedEnvironments(tc.p, allEnvs)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.p.Name, diff)
		}
	}
}

func TestAffected_PolicyChangeTouchesOldAndNewSelections(t *testing.T) {
	t.Parallel()
	before := pol("p", "x", both, []apiv1.IngressRule{{}}, nil)
	after := before
	after.EnvironmentSelector = *sel("tier", "db")
	describedOnly := before
	describedOnly.Description = "new words"
	describedOnly.Generation = 9
	renamed := before
	renamed.Name = "y"
	retyped := before
	retyped.PolicyTypes = []string{apiv1.Ingress}
	normalizedSame := before
	normalizedSame.Ingress = []apiv1.IngressRule{{From: []apiv1.Peer{}, Ports: []apiv1.Port{}}}
	normalizedSame.Egress = []apiv1.EgressRule{}

	for _, tc := range []struct {
		name          string
		before, after *apiv1.Policy
		want          []string
	}{
		{"create", nil, &before, []string{"e1"}},
		{"delete", &after, nil, []string{"e2", "e3", "e4", "e5"}},
		{"reselect", &before, &after, []string{"e1", "e2", "e3", "e4", "e5"}},
		{"description only", &before, &describedOnly, nil},
		{"same rules in another spelling", &before, &normalizedSame, nil},
		{"rename shows in effective policy", &before, &renamed, []string{"e1"}},
		{"policy types", &before, &retyped, []string{"e1"}},
	} {
		if diff := cmp.Diff(tc.want, Affected(tc.before, tc.after, allEnvs)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestAffectedByEnvironment_ReachesEnvironmentsThatSeeItAsAPeer(t *testing.T) {
	t.Parallel()
	// webToDB lets web (selected) reach tier=db; dbFromAll lets any
	// environment of the project into db; ingressOnly has a peer selector in
	// a direction it does not enforce.
	webToDB := pol("p1", "web-to-db", []string{apiv1.Egress}, nil,
		[]apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: sel("tier", "db")}}}})
	dbFromAll := pol("p2", "db-from-all", []string{apiv1.Ingress},
		[]apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: sel()}}}}, nil)
	dbFromAll.EnvironmentSelector = *sel("tier", "db")
	ingressOnly := pol("p3", "cache", []string{apiv1.Ingress}, []apiv1.IngressRule{{}},
		[]apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: sel("tier", "cache")}}}})
	ingressOnly.EnvironmentSelector = *sel("tier", "cache-client")
	policies := []apiv1.Policy{webToDB, dbFromAll, ingressOnly}

	newDB := env("e9", "p1", "", "tier", "db")
	withAddr := newDB
	withAddr.Enforcement.Address = "198.18.0.9"
	renamed := withAddr
	renamed.Name = "renamed"
	relabeled := withAddr
	relabeled.Labels = labels("tier", "cache")
	gone := withAddr
	gone.State = apiv1.StateDeleting
	described := withAddr
	described.Description = "words"
	described.Generation = 5
	cacheClient := env("e8", "p1", "198.18.0.8", "tier", "cache-client")
	cacheClientRelabeled := cacheClient
	cacheClientRelabeled.Labels = labels("tier", "cache")
	otherProject := env("x9", "p2", "198.18.0.9", "tier", "db")

	// e7 stays selected by the cache policy whatever happens to e8.
	envs := append([]apiv1.Environment{cacheClient, env("e7", "p1", "198.18.0.7", "tier", "cache-client")}, allEnvs...)
	dbs := []string{"e2", "e3", "e4", "e5"}
	for _, tc := range []struct {
		name          string
		before, after *apiv1.Environment
		want          []string
	}{
		{"created: itself, and every env whose peers include it (web, db via empty selector)", nil, &newDB,
			[]string{"e1", "e2", "e3", "e4", "e5", "e9"}},
		{"address assigned", &newDB, &withAddr, []string{"e1", "e2", "e3", "e4", "e5", "e9"}},
		{"renamed: peers show its name", &withAddr, &renamed, []string{"e1", "e2", "e3", "e4", "e5", "e9"}},
		{"description only: nothing", &withAddr, &described, nil},
		{"relabeled out of tier=db: web loses it, dbs see it unchanged, itself", &withAddr, &relabeled,
			[]string{"e1", "e9"}},
		{"deleting: no longer a peer", &withAddr, &gone, append(append([]string{"e1"}, dbs...), "e9")},
		{"deleted while deleting: nothing left to see", &gone, nil, nil},
		{"deleted while ready: the peers of it, not itself", &withAddr, nil, append([]string{"e1"}, dbs...)},
		{"peer selectors of unenforced directions do not count", &cacheClient, &cacheClientRelabeled,
			[]string{"e8"}},
		{"other projects' changes touch nothing here", nil, &otherProject, []string{"x9"}},
	} {
		if diff := cmp.Diff(tc.want, AffectedByEnvironment(tc.before, tc.after, policies, envs, nil)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestOwnedPolicySpec_IsValidAndListsBothDirections(t *testing.T) {
	t.Parallel()
	long := web
	long.Name = strings.Repeat("a", 52) + "-" + strings.Repeat("b", 10)
	for _, e := range []apiv1.Environment{web, long} {
		spec := OwnedPolicySpec(e, apiv1.ConfigurePolicy{Ingress: []apiv1.IngressRule{{Ports: []apiv1.Port{tcp(80)}}}})
		if fe := spec.Validate(); fe != nil {
			t.Errorf("%s: owned spec invalid: %v", e.Name, fe)
		}
		if diff := cmp.Diff(spec, spec.Normalize()); diff != "" {
			t.Errorf("%s: owned spec not normalized (-want +got):\n%s", e.Name, diff)
		}
		if diff := cmp.Diff(both, spec.PolicyTypes); diff != "" {
			t.Errorf("%s: policy types (-want +got):\n%s", e.Name, diff)
		}
	}
	if got, want := OwnedPolicyName(long), strings.Repeat("a", 52)+"-configure"; got != want {
		t.Errorf("OwnedPolicyName = %q, want %q (the cut must not end in '-')", got, want)
	}
}
