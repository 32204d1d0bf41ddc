package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// MaxCoverageListed bounds the environments a CIDRCoverage names.
const MaxCoverageListed = 10

// Coverage describes a CIDR peer that covers covered, the environments of
// other projects holding addresses in it (more: there are others beyond
// those). Only the environments of projects sees reports as visible are
// named; the others are counted. quarantine is how long a freed address
// waits before a new environment gets it. nil when covered is empty.
func Coverage(cidr string, covered []apiv1.PinnedEnvironment, more bool, sees func(projectID string) bool, quarantine time.Duration) *apiv1.CIDRCoverage {
	if len(covered) == 0 {
		return nil
	}
	c := &apiv1.CIDRCoverage{Environments: []apiv1.PinnedEnvironment{}, Count: len(covered), More: more}
	hidden := 0
	for _, e := range covered {
		switch {
		case !sees(e.ProjectID):
			hidden++
		case len(c.Environments) < MaxCoverageListed:
			c.Environments = append(c.Environments, e)
		}
	}
	count := fmt.Sprint(c.Count)
	if more {
		count = "more than " + count
	}
	var who []string
	for _, e := range c.Environments {
		who = append(who, e.ID+" of "+e.ProjectID)
	}
	if shown := len(c.Environments) + hidden; shown < len(covered) || more {
		who = append(who, "others")
	}
	if hidden > 0 {
		who = append(who, fmt.Sprintf("%d in projects out of your scope", hidden))
	}
	c.Warning = fmt.Sprintf("cidr %s covers the addresses of %s environments of other projects (%s): their traffic matches this rule. "+
		"An address in a CIDR stays there after its environment is gone, and isolationd hands a freed address to a new environment, "+
		"of any project, %s after it was freed; to allow environments, use an environment_selector peer",
		cidr, count, strings.Join(who, "; "), quarantine)
	return c
}

// CheckWarnings are the coverage warnings that go with res, the answer to
// req against eff (annotated with Coverage): those of the matched rule's
// CIDR peers that admitted req's address.
func CheckWarnings(eff apiv1.EffectivePolicy, req apiv1.CheckRequest, res apiv1.CheckResult) []string {
	if !res.Allowed || res.Matched == nil {
		return nil
	}
	a, err := parseAddr(req.Address)
	if err != nil {
		return nil
	}
	rules := eff.Ingress
	if res.Matched.Direction == apiv1.Egress {
		rules = eff.Egress
	}
	var out []string
	for _, r := range rules {
		if r.PolicyID != res.Matched.PolicyID || r.RuleIndex != res.Matched.RuleIndex {
			continue
		}
		for _, p := range r.Peers {
			if c := compilePeer(p); p.Covers != nil && c.matches(a) {
				out = append(out, p.Covers.Warning)
			}
		}
	}
	return out
}
