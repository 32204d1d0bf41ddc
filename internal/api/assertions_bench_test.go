package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/control/controltest"
)

// assertionBenchAPI is a server holding the benchmark project, a client
// of it, and the policy a write patches.
func assertionBenchAPI(b *testing.B, ab controltest.AssertionBench) (*client.Client, apiv1.Policy) {
	b.Helper()
	ctx := context.Background()
	srv := benchServer(b, b.TempDir())
	c, err := client.New(client.Config{Endpoint: srv.URL(), Token: srv.AdminToken()})
	if err != nil {
		b.Fatal(err)
	}
	p, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "shop"})
	if err != nil {
		b.Fatal(err)
	}
	written := ab.Seed(b, p.ID,
		func(e apiv1.EnvironmentCreate) error { _, err := c.Environments().Create(ctx, e); return err },
		func(in apiv1.PolicyCreate) (apiv1.Policy, error) {
			pol, err := c.Policies().Create(ctx, in)
			if err != nil {
				return apiv1.Policy{}, err
			}
			return *pol, nil
		},
		func(in apiv1.AssertionCreate) error { _, err := c.Assertions(p.ID).Create(ctx, in); return err })
	return c, written
}

// BenchmarkAPIPolicyWriteWith100Assertions is
// BenchmarkPolicyWriteWith100Assertions through the API: PATCH
// /v1/policies/{id} with an Idempotency-Key, as Terraform sends it, to a
// server whose project has 100 assertions and to one whose has none,
// alternately in one run. Target: ratio <= 2.
func BenchmarkAPIPolicyWriteWith100Assertions(b *testing.B) {
	ctx := context.Background()
	none, full := controltest.NewAssertionBench(0), controltest.NewAssertionBench(100)
	noneClient, nonePolicy := assertionBenchAPI(b, none)
	fullClient, fullPolicy := assertionBenchAPI(b, full)
	write := func(c *client.Client, pol apiv1.Policy, i int) time.Duration {
		start := time.Now()
		if _, err := c.Policies().Update(ctx, pol.ID, full.Patch(pol, i), ""); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var base, with []time.Duration
	b.ResetTimer()
	for i := range b.N {
		base = append(base, write(noneClient, nonePolicy, i))
		with = append(with, write(fullClient, fullPolicy, i))
	}
	b.StopTimer()
	full.ReportRatio(b, base, with)
}
