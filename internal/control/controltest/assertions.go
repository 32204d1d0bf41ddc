package controltest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// AssertionBench is the project the assertion benchmarks write to,
// through the application layer and through the API: 10 environments
// (web, api and db tiers), 10 policies, and assertions of every kind that
// hold. Written is the index in Policies of the policy every write
// patches.
type AssertionBench struct {
	Environments []apiv1.EnvironmentCreate
	Policies     []apiv1.PolicySpec
	Assertions   []apiv1.AssertionSpec
	Written      int
}

// NewAssertionBench is the project with n assertions; ProjectID is left
// for the caller to fill in.
func NewAssertionBench(n int) AssertionBench {
	var ab AssertionBench
	tiers := []string{"web", "api", "db"}
	for i := range 10 {
		ab.Environments = append(ab.Environments, apiv1.EnvironmentCreate{Name: fmt.Sprintf("env-%d", i),
			Labels: map[string]string{"tier": tiers[i%3], "shard": fmt.Sprint(i % 2)}})
	}
	port := func(n int) []apiv1.Port { return []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: &n}} }
	tier := func(t string) *apiv1.Selector { return &apiv1.Selector{MatchLabels: map[string]string{"tier": t}} }
	ab.Policies = []apiv1.PolicySpec{
		{Name: "egress", EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{}}, PolicyTypes: []string{apiv1.Egress},
			Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{EnvironmentSelector: &apiv1.Selector{}}, {FQDN: "registry.npmjs.org"}}}}},
		{Name: "api-from-web", EnvironmentSelector: *tier("api"), PolicyTypes: []string{apiv1.Ingress}, Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: tier("web")}}, Ports: port(8080)}}},
		{Name: "db-from-api", EnvironmentSelector: *tier("db"), PolicyTypes: []string{apiv1.Ingress}, Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{EnvironmentSelector: tier("api")}}, Ports: port(5432)}}},
	}
	for i := len(ab.Policies); i < 10; i++ {
		ab.Policies = append(ab.Policies, apiv1.PolicySpec{Name: fmt.Sprintf("extra-%d", i), EnvironmentSelector: *tier("web"), PolicyTypes: []string{apiv1.Ingress},
			Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{{CIDR: "10.0.0.0/8"}}, Ports: port(9000 + i)}}})
	}
	ab.Written = 1
	kinds := []apiv1.AssertionSpec{
		{From: apiv1.AssertionSource{EnvironmentSelector: tier("web")}, To: apiv1.AssertionTarget{EnvironmentSelector: tier("api")}, Port: 8080, Expect: apiv1.ExpectAllow},
		{From: apiv1.AssertionSource{EnvironmentSelector: tier("api")}, To: apiv1.AssertionTarget{EnvironmentSelector: tier("db")}, Port: 5432, Expect: apiv1.ExpectAllow},
		{From: apiv1.AssertionSource{EnvironmentSelector: tier("web")}, To: apiv1.AssertionTarget{EnvironmentSelector: tier("db")}, Port: 5432, Expect: apiv1.ExpectDeny},
		{From: apiv1.AssertionSource{Environment: "env-0"}, To: apiv1.AssertionTarget{CIDR: "10.0.0.0/8"}, Port: 22, Expect: apiv1.ExpectDeny},
		{From: apiv1.AssertionSource{EnvironmentSelector: &apiv1.Selector{}}, To: apiv1.AssertionTarget{FQDN: "registry.npmjs.org"}, Port: 443, Expect: apiv1.ExpectAllow},
	}
	for i := range n {
		s := kinds[i%len(kinds)]
		s.Name = fmt.Sprintf("assertion-%d", i)
		ab.Assertions = append(ab.Assertions, s)
	}
	return ab
}

// Seed writes the project's environments, policies and assertions with
// the given calls, and returns the policy the writes patch.
func (ab AssertionBench) Seed(tb testing.TB, projectID string, env func(apiv1.EnvironmentCreate) error,
	pol func(apiv1.PolicyCreate) (apiv1.Policy, error), assertion func(apiv1.AssertionCreate) error) apiv1.Policy {
	tb.Helper()
	for _, e := range ab.Environments {
		e.ProjectID = projectID
		if err := env(e); err != nil {
			tb.Fatal(err)
		}
	}
	var written apiv1.Policy
	for i, s := range ab.Policies {
		p, err := pol(apiv1.PolicyCreate{ProjectID: projectID, PolicySpec: s})
		if err != nil {
			tb.Fatal(err)
		}
		if i == ab.Written {
			written = p
		}
	}
	for _, s := range ab.Assertions {
		if err := assertion(apiv1.AssertionCreate{AssertionSpec: s}); err != nil {
			tb.Fatal(err)
		}
	}
	return written
}

// Patch is the benchmark's i-th write of the written policy p (api's
// ingress from web): on every other write it allows tcp/8081 besides the
// tcp/8080 that assertions test, so that every write changes traffic
// they are about, and keeps them.
func (AssertionBench) Patch(p apiv1.Policy, i int) apiv1.PolicyPatch {
	rules := slices.Clone(p.Ingress)
	tested, other := 8080, 8081
	rules[0].Ports = []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: &tested}}
	if i%2 == 0 {
		rules[0].Ports = append(rules[0].Ports, apiv1.Port{Protocol: apiv1.ProtocolTCP, Port: &other})
	}
	return apiv1.PolicyPatch{Ingress: &rules}
}

// ReportRatio reports the medians of writes to the project without
// assertions (base) and with them, measured alternately in one run, and
// their ratio.
func (AssertionBench) ReportRatio(b *testing.B, base, with []time.Duration) {
	mBase, mWith := median(base), median(with)
	b.ReportMetric(float64(mBase.Microseconds()), "µs-median-0-assertions")
	b.ReportMetric(float64(mWith.Microseconds()), "µs-median-100-assertions")
	b.ReportMetric(float64(mWith)/float64(mBase), "ratio")
	b.ReportMetric(0, "ns/op")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
