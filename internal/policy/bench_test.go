package policy

import (
	"fmt"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// benchProject is a large project: 1,000 environments in 10 tiers and 100
// policies, each with cidr and selector peers and a few ports.
func benchProject() (apiv1.Environment, []apiv1.Policy, []apiv1.Environment) {
	return benchPolicies(100, false)
}

// benchPolicies is benchProject with n policies in its place.
func benchPolicies(n int, cross bool) (apiv1.Environment, []apiv1.Policy, []apiv1.Environment) {
	envs := make([]apiv1.Environment, 1000)
	for i := range envs {
		envs[i] = env(fmt.Sprintf("e%04d", i), "p1", fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), "tier", fmt.Sprintf("t%d", i%10))
	}
	if cross {
		envs = append(envs, crossEnvs()...)
	}
	policies := make([]apiv1.Policy, n)
	for i := range policies {
		p := pol(fmt.Sprintf("p%03d", i), fmt.Sprintf("policy-%03d", i), both,
			[]apiv1.IngressRule{{
				From:  []apiv1.Peer{cidr(fmt.Sprintf("10.%d.0.0/16", i), fmt.Sprintf("10.%d.1.0/24", i)), {EnvironmentSelector: sel("tier", fmt.Sprintf("t%d", i%10))}},
				Ports: []apiv1.Port{tcp(80), tcp(443), {Protocol: "udp", Port: ptr(8000), EndPort: ptr(9000)}},
			}},
			[]apiv1.EgressRule{{To: []apiv1.Peer{cidr(fmt.Sprintf("2001:db8:%x::/48", i))}, Ports: []apiv1.Port{tcp(5432)}}})
		p.EnvironmentSelector = apiv1.Selector{}
		if cross {
			addCrossRule(&p, i)
		}
		policies[i] = p
	}
	return envs[0], policies, envs
}

// crossEnvs are 200 environments of four other projects, in ten tiers.
func crossEnvs() []apiv1.Environment {
	out := make([]apiv1.Environment, 200)
	for i := range out {
		out[i] = env(fmt.Sprintf("x%04d", i), fmt.Sprintf("shared%d", i%4), fmt.Sprintf("198.20.%d.%d", i/250, i%250+1), "tier", fmt.Sprintf("t%d", i%10))
	}
	return out
}

// addCrossRule gives policy i a selector written with match_expressions
// and an ingress rule from two tiers of the projects labelled shared or
// infra (picked by match_expressions), on tcp and sctp.
func addCrossRule(p *apiv1.Policy, i int) {
	tiers := []string{fmt.Sprintf("t%d", i%10), fmt.Sprintf("t%d", (i+1)%10)}
	p.EnvironmentSelector.MatchExpressions = []apiv1.SelectorRequirement{{Key: "tier", Operator: apiv1.OpNotIn, Values: []string{"none"}}}
	p.Ingress = append(p.Ingress, apiv1.IngressRule{
		From: []apiv1.Peer{{
			ProjectSelector:     &apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{{Key: "team", Operator: apiv1.OpIn, Values: []string{"shared", "infra"}}}},
			EnvironmentSelector: &apiv1.Selector{MatchExpressions: []apiv1.SelectorRequirement{{Key: "tier", Operator: apiv1.OpIn, Values: tiers}}},
		}},
		Ports: []apiv1.Port{tcp(5432), {Protocol: apiv1.ProtocolSCTP, Port: ptr(3868)}},
	})
}

// benchProjects labels the projects of benchPolicies(_, true).
var benchProjects = map[string]map[string]string{
	"p1": {"team": "ci"}, "shared0": {"team": "shared"}, "shared1": {"team": "infra"}, "shared2": {"team": "other"}, "shared3": {},
}

// todaysPolicies are the 1,000 policies behind the README's check figure
// (BenchmarkPolicies of the netns driver): each lets in a /24 of the
// internet but its upper half on a udp port and a tcp range, and an IPv6
// /64 on icmp, and sends to one environment; only the last allows
// 198.19.0.10 on udp 5432. With cross, each also has addCrossRule's
// cross-project rule, resolved against crossEnvs.
func todaysPolicies(cross bool) (apiv1.Environment, []apiv1.Policy, []apiv1.Environment) {
	target := env("e0000", "p1", "198.18.0.10", "tier", "t0")
	envs := []apiv1.Environment{target}
	for i := range 999 {
		envs = append(envs, env(fmt.Sprintf("e%04d", i+1), "p1", fmt.Sprintf("198.18.%d.%d", 2+i/250, 1+i%250), "peer", fmt.Sprint(i)))
	}
	if cross {
		envs = append(envs, crossEnvs()...)
	}
	policies := make([]apiv1.Policy, 0, 1000)
	for i := range 999 {
		p := pol(fmt.Sprintf("p%03d", i), fmt.Sprintf("policy-%03d", i), both,
			[]apiv1.IngressRule{
				{From: []apiv1.Peer{cidr(fmt.Sprintf("198.19.%d.0/24", 1+i%250), fmt.Sprintf("198.19.%d.128/25", 1+i%250))},
					Ports: []apiv1.Port{{Protocol: "udp", Port: ptr(10000 + i)}, {Port: ptr(20000 + i), EndPort: ptr(20010 + i)}}},
				{From: []apiv1.Peer{cidr(fmt.Sprintf("fd00:198:19:%x::/64", i))}, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolICMP}}},
			},
			[]apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: sel("peer", fmt.Sprint(i))}}, Ports: []apiv1.Port{tcp(30000 + i)}}})
		p.EnvironmentSelector = apiv1.Selector{MatchLabels: labels("tier", "t0")}
		if cross {
			addCrossRule(&p, i)
		}
		policies = append(policies, p)
	}
	last := pol("p999", "policy-999", []string{apiv1.Ingress}, []apiv1.IngressRule{{From: []apiv1.Peer{cidr("198.19.0.0/24")}, Ports: []apiv1.Port{{Protocol: "udp", Port: ptr(5432)}}}}, nil)
	last.EnvironmentSelector = apiv1.Selector{MatchLabels: labels("tier", "t0")}
	return target, append(policies, last), envs
}

// BenchmarkRulesetCheck1000 is check with 1,000 policies, in one run:
// today's policies (the README's 20 µs), then the same with a
// cross-project rule of match_expressions selectors in every policy,
// which must stay within 2x; then a denied check, which walks every rule
// and explains itself, in a project of 1,000 environments whose selector
// peers resolve to 100 each.
func BenchmarkRulesetCheck1000(b *testing.B) {
	for _, cross := range []bool{false, true} {
		name := "today"
		if cross {
			name = "cross-project-expressions"
		}
		b.Run(name, func(b *testing.B) {
			target, policies, envs := todaysPolicies(cross)
			rs := Compile(EffectiveAcross(target, policies, envs, benchProjects))
			req := apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "udp", Address: "198.19.0.10", Port: 5432}
			for b.Loop() {
				if res := rs.Check(req); !res.Allowed || res.Reason == "" {
					b.Fatal(res)
				}
			}
		})
	}
	for _, cross := range []bool{false, true} {
		name := "denied-labels"
		if cross {
			name = "denied-cross-project-expressions"
		}
		b.Run(name, func(b *testing.B) {
			target, policies, envs := benchPolicies(1000, cross)
			rs := Compile(EffectiveAcross(target, policies, envs, benchProjects))
			req := apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "tcp", Address: "192.0.2.1", Port: 80}
			for b.Loop() {
				if res := rs.Check(req); res.Allowed || res.Reason == "" {
					b.Fatal(res)
				}
			}
		})
	}
}

func BenchmarkEffective(b *testing.B) {
	target, policies, envs := benchProject()
	for b.Loop() {
		Effective(target, policies, envs)
	}
}

// BenchmarkRulesetCheckDenied walks every rule: the worst case.
func BenchmarkRulesetCheckDenied(b *testing.B) {
	target, policies, envs := benchProject()
	rs := Compile(Effective(target, policies, envs))
	req := apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "tcp", Address: "192.0.2.1", Port: 80}
	for b.Loop() {
		if rs.Check(req).Allowed {
			b.Fatal("allowed")
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	target, policies, envs := benchProject()
	p := Effective(target, policies, envs)
	for b.Loop() {
		Compile(p)
	}
}
