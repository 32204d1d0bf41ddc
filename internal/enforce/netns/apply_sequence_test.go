package netns_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

// TestApply_AnySequenceOfPoliciesApplies applies random policies one
// after another to the same environments, as the control plane does:
// each Apply changes only what differs from the one before, and the
// kernel must accept every such change (no overlap left behind, nothing
// deleted twice).
func TestApply_AnySequenceOfPoliciesApplies(t *testing.T) {
	seed := netnstest.Seed(t, "seed", *seedFlag)
	l := newLab(t)
	gen := &netnstest.Generator{R: rand.New(rand.NewPCG(seed, 2)), CIDRs: diffCIDRs, Labels: diffLabels, Ports: probePort}
	var envs []apiv1.Environment
	for i, labels := range diffEnvs[:3] {
		id := fmt.Sprintf("env-%d", i)
		addr := fmt.Sprintf("198.18.0.%d", 10+i)
		if _, err := l.d.Provision(context.Background(), id, addr); err != nil {
			t.Fatal(err)
		}
		envs = append(envs, apiv1.Environment{ID: id, ProjectID: "proj", Name: id, Labels: labels, State: apiv1.StateReady,
			Enforcement: apiv1.Enforcement{Driver: "netns", Address: addr}})
	}
	for round := range 150 {
		policies := make([]apiv1.Policy, 1+gen.R.IntN(6))
		for i := range policies {
			policies[i] = apiv1.Policy{ID: fmt.Sprintf("pol-%d-%d", round, i), ProjectID: "proj", PolicySpec: gen.PolicySpec(fmt.Sprintf("p%d", i))}
		}
		for _, e := range envs {
			e.Enforcement.Generation = int64(round + 1)
			p := policy.Effective(e, policies, envs)
			if err := l.d.Apply(context.Background(), e.ID, p); err != nil {
				text, _ := l.d.Ruleset(e.ID)
				t.Fatalf("round %d (seed %d): %v\nrules before:\n%s", round, seed, err, text)
			}
		}
	}
}
