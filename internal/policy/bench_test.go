package policy

import (
	"fmt"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// benchProject is a large project: 1,000 environments in 10 tiers and 100
// policies, each with cidr and selector peers and a few ports.
func benchProject() (apiv1.Environment, []apiv1.Policy, []apiv1.Environment) {
	envs := make([]apiv1.Environment, 1000)
	for i := range envs {
		envs[i] = env(fmt.Sprintf("e%04d", i), "p1", fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), "tier", fmt.Sprintf("t%d", i%10))
	}
	policies := make([]apiv1.Policy, 100)
	for i := range policies {
		p := pol(fmt.Sprintf("p%03d", i), fmt.Sprintf("policy-%03d", i), both,
			[]apiv1.IngressRule{{
				From:  []apiv1.Peer{cidr(fmt.Sprintf("10.%d.0.0/16", i), fmt.Sprintf("10.%d.1.0/24", i)), {EnvironmentSelector: sel("tier", fmt.Sprintf("t%d", i%10))}},
				Ports: []apiv1.Port{tcp(80), tcp(443), {Protocol: "udp", Port: ptr(8000), EndPort: ptr(9000)}},
			}},
			[]apiv1.EgressRule{{To: []apiv1.Peer{cidr(fmt.Sprintf("2001:db8:%x::/48", i))}, Ports: []apiv1.Port{tcp(5432)}}})
		p.EnvironmentSelector = apiv1.Selector{}
		policies[i] = p
	}
	return envs[0], policies, envs
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
