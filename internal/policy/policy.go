// Package policy computes what isolationd's network policies mean for an
// environment: which policies select it, its merged allow rules with
// selector peers resolved to addresses, whether a packet is allowed, and
// which environments a change touches.
//
// The semantics are Kubernetes NetworkPolicy's, with one difference: every
// environment is isolated by default (all ingress and all egress denied),
// and policies only add allows. The package is pure: callers pass in the
// objects, it never reads a store.
package policy

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Selects reports whether sel picks an object with these labels, as a
// Kubernetes label selector does: every match_labels entry must be
// present with the same value and every match_expressions requirement
// met, so an empty selector picks everything.
func Selects(sel apiv1.Selector, labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	for _, r := range sel.MatchExpressions {
		if !meets(r, labels) {
			return false
		}
	}
	return true
}

// meets applies one match_expressions requirement. An unknown operator
// (input is validated, so it never comes) selects nothing.
func meets(r apiv1.SelectorRequirement, labels map[string]string) bool {
	v, ok := labels[r.Key]
	switch r.Operator {
	case apiv1.OpIn:
		return ok && slices.Contains(r.Values, v)
	case apiv1.OpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	case apiv1.OpExists:
		return ok
	case apiv1.OpDoesNotExist:
		return !ok
	}
	return false
}

// AppliesTo reports whether p selects env. A policy owned by an
// environment (the one PUT /environments/{id}/configure manages) selects
// only that environment, whatever its selector says.
func AppliesTo(p apiv1.Policy, env apiv1.Environment) bool {
	if p.ProjectID != env.ProjectID {
		return false
	}
	if p.OwnerEnvironmentID != "" {
		return p.OwnerEnvironmentID == env.ID
	}
	return Selects(p.EnvironmentSelector, env.Labels)
}

// HasType reports whether p's policy_types lists direction, that is whether
// p's rules of that direction take effect.
func HasType(p apiv1.PolicySpec, direction string) bool {
	return slices.Contains(p.PolicyTypes, direction)
}

// PeerEligible reports whether e can be the peer an environment_selector
// resolves to. Environments on their way out are not: their address may
// soon belong to someone else.
func PeerEligible(e apiv1.Environment) bool {
	return e.State != apiv1.StateDeleting && e.State != apiv1.StateExpired
}

// SelectedEnvironments returns the ids, sorted, of the environments in envs
// that p selects.
func SelectedEnvironments(p apiv1.Policy, envs []apiv1.Environment) []string {
	var ids []string
	for _, e := range envs {
		if AppliesTo(p, e) {
			ids = append(ids, e.ID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Effective merges the policies that select env into its effective policy,
// for peers of env's own project only: EffectiveAcross with no projects.
func Effective(env apiv1.Environment, policies []apiv1.Policy, projectEnvs []apiv1.Environment) apiv1.EffectivePolicy {
	return EffectiveAcross(env, policies, projectEnvs, nil)
}

// EffectiveAcross merges the policies that select env into its effective
// policy. policies may hold any project's policies; candidates are the
// environments selector peers may resolve to (env itself is one whether
// or not the list holds it), and projects the labels of their projects,
// by id, for project_selector peers: a candidate of a project not in
// projects is picked only in env's own project, by peers without a
// project_selector or with an empty one. Policies are ordered by name, then id, and their
// rules follow in that order, each traced to its policy and index.
// Named ports are resolved against the destination's workload ports: an
// ingress rule's against env's, an egress rule's against each peer
// environment's, in one rule per destination with the same policy and
// index; a rule whose ports all fail to resolve allows nothing and is
// left out. Generation is env.Enforcement.Generation. Peers with equal
// selectors share their Environments slice: treat the result as
// read-only.
func EffectiveAcross(env apiv1.Environment, policies []apiv1.Policy, candidates []apiv1.Environment, projects map[string]map[string]string) apiv1.EffectivePolicy {
	out := apiv1.EffectivePolicy{
		EnvironmentID: env.ID,
		Address:       env.Enforcement.Address,
		Generation:    env.Enforcement.Generation,
		Policies:      []apiv1.PolicyRef{},
		Ingress:       []apiv1.EffectiveRule{},
		Egress:        []apiv1.EffectiveRule{},
	}
	var selected []apiv1.Policy
	for _, p := range policies {
		if AppliesTo(p, env) {
			selected = append(selected, p)
		}
	}
	slices.SortFunc(selected, func(a, b apiv1.Policy) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	peers := &resolver{
		env: env, projects: projects, candidates: peerCandidates(env, candidates),
		seen: map[string][]apiv1.PeerEnvironment{}, byID: map[string]apiv1.Environment{},
	}
	for _, p := range selected {
		out.Policies = append(out.Policies, apiv1.PolicyRef{ID: p.ID, Name: p.Name, PolicyTypes: slices.Clone(p.PolicyTypes)})
		if HasType(p.PolicySpec, apiv1.Ingress) {
			for i, r := range p.Ingress {
				out.Ingress = append(out.Ingress, peers.ingressRules(effectiveRule(p, i, r.From, r.Ports, peers))...)
			}
		}
		if HasType(p.PolicySpec, apiv1.Egress) {
			for i, r := range p.Egress {
				out.Egress = append(out.Egress, peers.egressRules(effectiveRule(p, i, r.To, r.Ports, peers))...)
			}
		}
	}
	return out
}

// peerCandidates returns the environments a selector peer may resolve
// to, env's own version of itself included, sorted by id.
func peerCandidates(env apiv1.Environment, candidates []apiv1.Environment) []apiv1.Environment {
	out := []apiv1.Environment{}
	if PeerEligible(env) {
		out = append(out, env)
	}
	for _, e := range candidates {
		if e.ID != env.ID && PeerEligible(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b apiv1.Environment) int { return cmp.Compare(a.ID, b.ID) })
	return slices.CompactFunc(out, func(a, b apiv1.Environment) bool { return a.ID == b.ID })
}

func effectiveRule(p apiv1.Policy, index int, peers []apiv1.Peer, ports []apiv1.Port, candidates *resolver) apiv1.EffectiveRule {
	r := apiv1.EffectiveRule{
		PolicyID:   p.ID,
		PolicyName: p.Name,
		RuleIndex:  index,
		Peers:      make([]apiv1.EffectivePeer, 0, len(peers)),
		Ports:      apiv1.NormalizePorts(ports),
	}
	for _, peer := range peers {
		ep := apiv1.EffectivePeer{Peer: apiv1.NormalizePeer(peer)}
		if peer.IsSelector() {
			ep.Environments = candidates.resolve(peer)
		}
		r.Peers = append(r.Peers, ep)
	}
	return r
}

// resolver resolves selector peers against one set of candidates,
// remembering each selector's answer: many rules share a few selectors,
// and a large project makes each resolution a scan of every environment.
type resolver struct {
	env        apiv1.Environment
	projects   map[string]map[string]string
	candidates []apiv1.Environment
	seen       map[string][]apiv1.PeerEnvironment
	byID       map[string]apiv1.Environment
}

// resolve lists the candidates a selector peer picks; it is never nil, so
// an empty result reads as "no environment matched", not "no selector".
// Peers with equal selectors share the returned slice.
func (r *resolver) resolve(peer apiv1.Peer) []apiv1.PeerEnvironment {
	key := selectorKey(peer.EnvironmentSelector) + "|" + selectorKey(peer.ProjectSelector)
	if out, ok := r.seen[key]; ok {
		return out
	}
	out := []apiv1.PeerEnvironment{}
	for _, e := range r.candidates {
		if r.picks(peer, e) {
			out = append(out, peerView(r.env, e))
			r.byID[e.ID] = e
		}
	}
	r.seen[key] = out
	return out
}

// picks applies Kubernetes' namespaceSelector semantics to one candidate.
func (r *resolver) picks(peer apiv1.Peer, e apiv1.Environment) bool {
	if peer.EnvironmentSelector != nil && !Selects(*peer.EnvironmentSelector, e.Labels) {
		return false
	}
	if peer.ProjectSelector == nil {
		return e.ProjectID == r.env.ProjectID
	}
	labels, ok := r.projects[e.ProjectID]
	if !ok {
		// Without its labels, the own project is still every project.
		return e.ProjectID == r.env.ProjectID && Selects(*peer.ProjectSelector, nil)
	}
	return Selects(*peer.ProjectSelector, labels)
}

// selectorKey is a selector's labels in key order and its expressions in
// order, quoted so that no two selectors share a key; nil has its own.
func selectorKey(sel *apiv1.Selector) string {
	if sel == nil {
		return "-"
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		b.WriteString(strconv.Quote(k))
		b.WriteString(strconv.Quote(sel.MatchLabels[k]))
	}
	for _, x := range sel.MatchExpressions {
		b.WriteString(" " + strconv.Quote(x.Key) + x.Operator)
		for _, v := range x.Values {
			b.WriteString(strconv.Quote(v))
		}
	}
	return b.String()
}

// peerView is how an effective policy of self names e.
func peerView(self, e apiv1.Environment) apiv1.PeerEnvironment {
	v := apiv1.PeerEnvironment{ID: e.ID, Name: e.Name, Address: e.Enforcement.Address}
	if e.ProjectID != self.ProjectID {
		v.ProjectID = e.ProjectID
	}
	return v
}

// OwnedPolicySpec is the spec of the policy that PUT
// /environments/{id}/configure keeps for env: both directions listed, so
// that the rules given are exactly what the environment allows on top of
// its other policies. Its selector is empty because ownership, not
// labels, decides what it selects.
func OwnedPolicySpec(env apiv1.Environment, rules apiv1.ConfigurePolicy) apiv1.PolicySpec {
	rules = rules.Normalize()
	return apiv1.PolicySpec{
		Name:                OwnedPolicyName(env),
		Description:         "Rules set through PUT /environments/" + env.ID + "/configure.",
		EnvironmentSelector: apiv1.Selector{MatchLabels: map[string]string{}},
		PolicyTypes:         []string{apiv1.Ingress, apiv1.Egress},
		Ingress:             rules.Ingress,
		Egress:              rules.Egress,
	}
}

// OwnedPolicyName names env's owned policy "<env name>-configure", cut to
// fit a DNS label.
func OwnedPolicyName(env apiv1.Environment) string {
	const suffix = "-configure"
	base := env.Name
	if n := apiv1.MaxNameLength - len(suffix); len(base) > n {
		base = base[:n]
	}
	for len(base) > 0 && base[len(base)-1] == '-' {
		base = base[:len(base)-1]
	}
	if base == "" {
		return suffix[1:]
	}
	return base + suffix
}
