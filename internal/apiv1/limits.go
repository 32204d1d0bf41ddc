package apiv1

import "fmt"

// Limits on everything a caller controls, so that no tenant can make the
// server store, compute or send an unbounded amount. The numbers live here
// once: the server enforces them and the provider checks the per-request
// ones at plan time with the same functions.
//
// Per request (400, checked by Validate): labels per object and their
// bytes, labels per selector, label selector terms, and per policy the rules, peers, ports and except
// entries, each counted over the whole policy (both directions, all
// rules) because the policy is what the effective policy merges.
//
// Per project (409 limit-exceeded, checked in the store transaction that
// would cross them): policies, policy entries, policy bytes, resolved
// peers, and the environment quota. Together they bound an environment's
// effective policy and the cost of building it (see the test
// TestEffectivePolicy_TheLargestATenantCanBuildWithinTheLimitsIsBoundedAndCheap).
const (
	MaxLabels = 64 // labels per object
	// MaxLabelBytes bounds an object's label keys and values together:
	// listing and matching environments decodes their labels, and 64
	// labels of the longest keys would be 25 KB per object.
	MaxLabelBytes = 4096
	// MaxSelectorLabels bounds match_labels per selector: each is one
	// more term of the query that resolves the selector.
	MaxSelectorLabels = 16
	// MaxSelectorValues bounds the values of one match_expressions entry.
	MaxSelectorValues = 64

	MaxRulesPerPolicy   = 100 // ingress and egress rules together
	MaxPeersPerPolicy   = 100 // from and to entries over all rules
	MaxPortsPerPolicy   = 100 // ports entries over all rules
	MaxExceptsPerPolicy = 100 // except entries over all peers

	MaxPoliciesPerProject = 1000
	// MaxPolicyEntriesPerProject bounds rules, peers, ports and except
	// entries over all of a project's policies: the per-policy limits
	// times MaxPoliciesPerProject would still let one environment's
	// effective policy reach tens of megabytes.
	MaxPolicyEntriesPerProject = 10000
	// MaxPolicyBytesPerProject bounds the JSON of a project's policy specs:
	// a selector of 64 long labels is 25 KB, so counting entries alone
	// does not bound what an effective policy repeats.
	MaxPolicyBytesPerProject = 1 << 20
	// MaxResolvedPeersPerProject bounds the project's environment_selector
	// peers times its environments: each such peer lists every environment
	// it picks in the effective policy, so that product, not the policies
	// alone, is what an effective policy can grow to.
	MaxResolvedPeersPerProject = 2000

	// MaxEnvironmentQuota is the largest environment quota a project may have.
	MaxEnvironmentQuota = 1 << 20

	MaxLabelSelectorTerms = 16

	// MaxListPageBytes is the byte budget of a list page: a page stops
	// early, with a cursor, rather than grow past it.
	MaxListPageBytes = 4 << 20
)

// PolicySize counts what a policy holds, the units of the limits above.
type PolicySize struct {
	Rules, Peers, SelectorPeers, Ports, Excepts int
}

// Entries is what the policy adds to MaxPolicyEntriesPerProject.
func (s PolicySize) Entries() int { return s.Rules + s.Peers + s.Ports + s.Excepts }

// Add returns the sum of two sizes.
func (s PolicySize) Add(o PolicySize) PolicySize {
	return PolicySize{s.Rules + o.Rules, s.Peers + o.Peers, s.SelectorPeers + o.SelectorPeers, s.Ports + o.Ports, s.Excepts + o.Excepts}
}

// Sub returns s without o.
func (s PolicySize) Sub(o PolicySize) PolicySize {
	return PolicySize{s.Rules - o.Rules, s.Peers - o.Peers, s.SelectorPeers - o.SelectorPeers, s.Ports - o.Ports, s.Excepts - o.Excepts}
}

// Size counts the rules of a policy spec, both directions.
func (s PolicySpec) Size() PolicySize {
	return ruleListsSize(s.Ingress, s.Egress)
}

func ruleListsSize(ingress []IngressRule, egress []EgressRule) PolicySize {
	var n PolicySize
	count := func(peers []Peer, ports []Port) {
		n.Rules++
		n.Peers += len(peers)
		n.Ports += len(ports)
		for _, p := range peers {
			n.Excepts += len(p.Except)
			if p.IsSelector() {
				n.SelectorPeers++
			}
		}
	}
	for _, r := range ingress {
		count(r.From, r.Ports)
	}
	for _, r := range egress {
		count(r.To, r.Ports)
	}
	return n
}

// ValidatePolicyLimits checks the per-policy limits over ingress and egress
// rules together (prefix is the path of the object holding both lists, ""
// for a policy body). Each error names the first entry past the limit, so
// the path says where the policy grew too big and the message says the
// limit and how many the policy has.
func ValidatePolicyLimits(prefix string, ingress []IngressRule, egress []EgressRule) []FieldError {
	var e errs
	total := ruleListsSize(ingress, egress)
	type counter struct {
		noun, scope string
		limit, got  int
		seen        int
		first       string
	}
	cs := []*counter{
		{noun: "rules", scope: "ingress and egress together", limit: MaxRulesPerPolicy, got: total.Rules},
		{noun: "peers", scope: "from and to entries over all rules", limit: MaxPeersPerPolicy, got: total.Peers},
		{noun: "ports", scope: "over all rules", limit: MaxPortsPerPolicy, got: total.Ports},
		{noun: "except entries", scope: "over all peers", limit: MaxExceptsPerPolicy, got: total.Excepts},
	}
	rules, peers, ports, excepts := cs[0], cs[1], cs[2], cs[3]
	step := func(c *counter, field string) {
		c.seen++
		if c.seen == c.limit+1 {
			c.first = field
		}
	}
	walk := func(dir, peersName string, i int, ps []Peer, pts []Port) {
		rf := index(path(prefix, dir), i)
		step(rules, rf)
		for j, p := range ps {
			pf := index(path(rf, peersName), j)
			step(peers, pf)
			for k := range p.Except {
				step(excepts, index(path(pf, "except"), k))
			}
		}
		for j := range pts {
			step(ports, index(path(rf, "ports"), j))
		}
	}
	for i, r := range ingress {
		walk("ingress", "from", i, r.From, r.Ports)
	}
	for i, r := range egress {
		walk("egress", "to", i, r.To, r.Ports)
	}
	for _, c := range cs {
		if c.got > c.limit {
			e.add(c.first, "%s", limitMessage(c.noun, "policy", c.scope, c.limit, c.got))
		}
	}
	return e
}

// limitMessage says which limit is crossed, its number and the count.
func limitMessage(noun, per, scope string, limit, got int) string {
	if scope != "" {
		scope = " (" + scope + ")"
	}
	return fmt.Sprintf("is past the limit of %d %s per %s%s: it has %d", limit, noun, per, scope, got)
}
