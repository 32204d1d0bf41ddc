package policy_test

import (
	"strings"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

func assertEnv(id, name, addr string, labels map[string]string) apiv1.Environment {
	return apiv1.Environment{ID: id, ProjectID: "prj_1", Name: name, Labels: labels, State: apiv1.StateReady,
		Enforcement: apiv1.Enforcement{Address: addr}}
}

func sel(k, v string) *apiv1.Selector { return &apiv1.Selector{MatchLabels: map[string]string{k: v}} }

func ingressFrom(name string, selects, from *apiv1.Selector, port int) apiv1.Policy {
	return apiv1.Policy{ID: "pol_" + name, ProjectID: "prj_1", PolicySpec: apiv1.PolicySpec{
		Name: name, EnvironmentSelector: *selects, PolicyTypes: []string{apiv1.Ingress},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: from}}, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: &port}}}},
	}}
}

func egressTo(peers ...apiv1.Peer) apiv1.Policy {
	return apiv1.Policy{ID: "pol_egress", ProjectID: "prj_1", PolicySpec: apiv1.PolicySpec{
		Name: "egress", PolicyTypes: []string{apiv1.Egress}, Egress: []apiv1.EgressRule{{To: peers}},
	}}
}

func TestBroken_OnlyAPacketThatHeldBeforeBreaksAnAssertion(t *testing.T) {
	t.Parallel()
	envs := []apiv1.Environment{
		assertEnv("env_web", "web", "198.18.0.1", map[string]string{"tier": "web"}),
		assertEnv("env_db1", "db1", "198.18.0.2", map[string]string{"tier": "db", "ok": "yes"}),
		assertEnv("env_db2", "db2", "198.18.0.3", map[string]string{"tier": "db"}),
	}
	open := egressTo(apiv1.Peer{CIDR: "0.0.0.0/0"})
	a := apiv1.Assertion{ID: "ast_1", ProjectID: "prj_1", AssertionSpec: apiv1.AssertionSpec{
		Name: "web-reaches-db", From: apiv1.AssertionSource{Environment: "web"}, To: apiv1.AssertionTarget{EnvironmentSelector: sel("tier", "db")},
		Protocol: apiv1.ProtocolTCP, Port: 5432, Expect: apiv1.ExpectAllow,
	}}
	// db2 is denied from the start: only db1's packet can break.
	held := []apiv1.Policy{open, ingressFrom("db", sel("ok", "yes"), sel("tier", "web"), 5432)}
	before := policy.NewEvaluator(policy.World{Environments: envs, Policies: held})
	if p, failing := before.Failing(a); !failing || p.ToID != "env_db2" {
		t.Fatalf("Failing = %v, %v; want db2's packet", p, failing)
	}
	kept := policy.NewEvaluator(policy.World{Environments: envs, Policies: []apiv1.Policy{open, ingressFrom("db", sel("ok", "yes"), sel("tier", "web"), 5432), ingressFrom("more", sel("ok", "yes"), sel("tier", "web"), 5433)}})
	if p, broken := policy.Broken(a, before, kept, nil); broken {
		t.Fatalf("a change keeping db1's packet broke %v", p)
	}
	broke := policy.NewEvaluator(policy.World{Environments: envs, Policies: []apiv1.Policy{open, ingressFrom("db", sel("ok", "yes"), sel("tier", "web"), 5433)}})
	p, broken := policy.Broken(a, before, broke, nil)
	if !broken || p.ToID != "env_db1" || p.Allowed {
		t.Fatalf("Broken = %+v, %v; want db1's packet, denied", p, broken)
	}
	if got := p.String(); got != "tcp/5432 from web (env_web) to db1 (env_db1)" {
		t.Errorf("packet %q", got)
	}
	if why := broke.Explain(p); !strings.Contains(why, "receiver's ingress") || !strings.Contains(why, "tcp/5433") {
		t.Errorf("Explain = %q, want the receiver's ingress and its near miss", why)
	}
	// A new environment's packet did not exist before: it breaks.
	grown := append(envs, assertEnv("env_db3", "db3", "198.18.0.4", map[string]string{"tier": "db", "ok": "no"}))
	after := policy.NewEvaluator(policy.World{Environments: grown, Policies: held})
	if p, broken := policy.Broken(a, before, after, nil); !broken || p.ToID != "env_db3" {
		t.Errorf("a new environment: Broken = %+v, %v; want db3's packet", p, broken)
	}
}

func TestEvaluator_CIDRTargetsCheckTheirFirstAndLastAddressAndFQDNTargetsMatchPatterns(t *testing.T) {
	t.Parallel()
	envs := []apiv1.Environment{assertEnv("env_web", "web", "198.18.0.1", nil)}
	ev := policy.NewEvaluator(policy.World{Environments: envs, Policies: []apiv1.Policy{
		egressTo(apiv1.Peer{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}, apiv1.Peer{FQDN: "*.github.com"}),
	}})
	for _, tc := range []struct {
		to      apiv1.AssertionTarget
		allowed bool
	}{
		{apiv1.AssertionTarget{CIDR: "10.0.0.0/8"}, true},
		{apiv1.AssertionTarget{CIDR: "10.1.0.0/16"}, false},
		{apiv1.AssertionTarget{CIDR: "10.0.0.0/15"}, false}, // its last address, 10.1.255.255, is excepted
		{apiv1.AssertionTarget{FQDN: "api.github.com"}, true},
		{apiv1.AssertionTarget{FQDN: "a.b.github.com"}, false},
	} {
		a := apiv1.Assertion{ProjectID: "prj_1", AssertionSpec: apiv1.AssertionSpec{From: apiv1.AssertionSource{Environment: "web"}, To: tc.to, Protocol: apiv1.ProtocolTCP, Port: 443, Expect: apiv1.ExpectAllow}}
		_, failing := ev.Failing(a)
		if failing == tc.allowed {
			t.Errorf("to %+v: allowed %v, want %v (packets %+v)", tc.to, !failing, tc.allowed, ev.Packets(a))
		}
	}
}

func TestMayAllow_OnlyAPolicyWhoseRulesMayAllowThePortCanChangeItsAnswer(t *testing.T) {
	t.Parallel()
	db := ingressFrom("db", sel("tier", "db"), sel("tier", "web"), 5432)
	anyPort := egressTo(apiv1.Peer{CIDR: "0.0.0.0/0"})
	named := ingressFrom("named", sel("tier", "db"), sel("tier", "web"), 1)
	named.Ingress[0].Ports = []apiv1.Port{{Protocol: apiv1.ProtocolTCP, PortName: "postgres"}}
	unenforced := db
	unenforced.PolicyTypes = []string{apiv1.Egress}
	for _, tc := range []struct {
		name  string
		p     apiv1.Policy
		proto string
		port  int
		want  bool
	}{
		{"its port", db, apiv1.ProtocolTCP, 5432, true},
		{"another port", db, apiv1.ProtocolTCP, 22, false},
		{"another protocol", db, apiv1.ProtocolUDP, 5432, false},
		{"a rule without ports", anyPort, apiv1.ProtocolUDP, 53, true},
		{"a named port", named, apiv1.ProtocolTCP, 22, true},
		{"rules of a direction it does not enforce", unenforced, apiv1.ProtocolTCP, 5432, false},
	} {
		if got := policy.MayAllow(tc.p, tc.proto, tc.port); got != tc.want {
			t.Errorf("%s: MayAllow(%s/%d) = %v, want %v", tc.name, tc.proto, tc.port, got, tc.want)
		}
	}
}
