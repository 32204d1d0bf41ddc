package control_test

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/control"
	"github.com/isolationhq/terraform-provider-isolation/internal/control/controltest"
)

// assertionBenchService is the application layer over a store holding
// the benchmark project with n assertions, and the policy a write patches.
func assertionBenchService(b *testing.B, ab controltest.AssertionBench) (*control.Service, apiv1.Policy) {
	b.Helper()
	ctx := context.Background()
	_, svc := controltest.Service(b, clockwork.NewRealClock(), "simulate")
	c := control.Call{RequestID: "req_bench", Actor: apiv1.Actor{Name: "bench"}}
	p, err := svc.CreateProject(ctx, c, apiv1.ProjectCreate{Name: "shop"})
	if err != nil {
		b.Fatal(err)
	}
	written := ab.Seed(b, p.ID,
		func(e apiv1.EnvironmentCreate) error { _, err := svc.CreateEnvironment(ctx, c, e); return err },
		func(in apiv1.PolicyCreate) (apiv1.Policy, error) { return svc.CreatePolicy(ctx, c, in) },
		func(in apiv1.AssertionCreate) error { _, err := svc.CreateAssertion(ctx, c, p.ID, in); return err })
	return svc, written
}

// BenchmarkPolicyWriteWith100Assertions patches a policy of a project
// with 100 assertions and of the same project with none, alternately in
// one run, through the application layer (one durable transaction each),
// and reports the median of each and their ratio: every write is checked
// against the assertions before it commits. Target: ratio <= 2.
func BenchmarkPolicyWriteWith100Assertions(b *testing.B) {
	ctx := context.Background()
	none, full := controltest.NewAssertionBench(0), controltest.NewAssertionBench(100)
	noneSvc, nonePolicy := assertionBenchService(b, none)
	fullSvc, fullPolicy := assertionBenchService(b, full)
	c := control.Call{RequestID: "req_bench", Actor: apiv1.Actor{Name: "bench"}}
	write := func(svc *control.Service, pol apiv1.Policy, i int) time.Duration {
		start := time.Now()
		if _, err := svc.PatchPolicy(ctx, c, pol.ID, full.Patch(pol, i)); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var base, with []time.Duration
	b.ResetTimer()
	for i := range b.N {
		base = append(base, write(noneSvc, nonePolicy, i))
		with = append(with, write(fullSvc, fullPolicy, i))
	}
	b.StopTimer()
	full.ReportRatio(b, base, with)
}
