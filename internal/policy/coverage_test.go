package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

func pinnedEnvs(n int, project string) []apiv1.PinnedEnvironment {
	out := make([]apiv1.PinnedEnvironment, n)
	for i := range out {
		out[i] = apiv1.PinnedEnvironment{ID: fmt.Sprintf("env_%02d", i), ProjectID: project, Address: fmt.Sprintf("198.18.0.%d", i+1)}
	}
	return out
}

func TestCoverage_NamesAtMostTenVisibleAndCountsTheRest(t *testing.T) {
	if c := Coverage("198.18.0.1/32", nil, false, func(string) bool { return true }, time.Hour); c != nil {
		t.Fatalf("nothing covered gave %+v, want nil", c)
	}
	covered := append(pinnedEnvs(12, "prj_seen"), apiv1.PinnedEnvironment{ID: "env_hidden", ProjectID: "prj_hidden", Address: "198.18.0.99"})
	c := Coverage("198.18.0.0/24", covered, true, func(p string) bool { return p == "prj_seen" }, 24*time.Hour)
	if c.Count != 13 || !c.More || len(c.Environments) != MaxCoverageListed {
		t.Fatalf("coverage %+v: want count 13, more, %d named", c, MaxCoverageListed)
	}
	for _, w := range []string{"cidr 198.18.0.0/24", "more than 13 environments", "env_00 of prj_seen", "others", "1 in projects out of your scope", "24h0m0s"} {
		if !strings.Contains(c.Warning, w) {
			t.Fatalf("warning %q does not say %q", c.Warning, w)
		}
	}
	if strings.Contains(c.Warning, "env_hidden") || strings.Contains(c.Warning, "prj_hidden") || strings.Contains(c.Warning, "env_10") {
		t.Fatalf("warning %q names an environment out of scope or beyond the ten listed", c.Warning)
	}
}

func TestCheckWarnings_OnlyForTheMatchedRulesCoveringPeerThatAdmittedTheAddress(t *testing.T) {
	cov := &apiv1.CIDRCoverage{Count: 1, Warning: "pinned"}
	eff := apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{
		{PolicyID: "pol_a", RuleIndex: 0, Peers: []apiv1.EffectivePeer{{Peer: cidr("198.18.0.5/32"), Covers: cov}, {Peer: cidr("198.18.1.0/24")}}},
		{PolicyID: "pol_a", RuleIndex: 1, Peers: []apiv1.EffectivePeer{{Peer: cidr("198.18.0.0/16"), Covers: cov}}},
	}}
	req := func(a string) apiv1.CheckRequest { return apiv1.CheckRequest{Direction: apiv1.Ingress, Address: a} }
	res := func(index int) apiv1.CheckResult {
		return apiv1.CheckResult{Allowed: true, Matched: &apiv1.Match{PolicyID: "pol_a", Direction: apiv1.Ingress, RuleIndex: index}}
	}
	for _, tc := range []struct {
		addr  string
		res   apiv1.CheckResult
		warns int
	}{
		{"198.18.0.5", res(0), 1},
		{"198.18.1.9", res(0), 0},
		{"198.18.2.1", res(1), 1},
		{"198.18.0.5", apiv1.CheckResult{}, 0},
	} {
		if got := CheckWarnings(eff, req(tc.addr), tc.res); len(got) != tc.warns {
			t.Errorf("%s matched by %+v: %d warnings, want %d", tc.addr, tc.res.Matched, len(got), tc.warns)
		}
	}
}
