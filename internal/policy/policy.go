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

// Selects reports whether sel picks an object with these labels: every
// match_labels entry must be present with the same value, so an empty
// selector picks everything.
func Selects(sel apiv1.Selector, labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
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

// Effective merges the policies that select env into its effective policy.
// policies may hold any project's policies; projectEnvs are the candidates
// for environment_selector peers (other projects' are ignored, and env
// itself is a candidate whether or not the list holds it). Policies are
// ordered by name, then id, and their rules follow in that order, each
// traced to its policy and index. Generation is env.Enforcement.Generation.
// Peers with equal selectors share their Environments slice: treat the
// result as read-only.
func Effective(env apiv1.Environment, policies []apiv1.Policy, projectEnvs []apiv1.Environment) apiv1.EffectivePolicy {
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
	peers := &resolver{candidates: peerCandidates(env, projectEnvs), seen: map[string][]apiv1.PeerEnvironment{}}
	for _, p := range selected {
		out.Policies = append(out.Policies, apiv1.PolicyRef{ID: p.ID, Name: p.Name})
		if HasType(p.PolicySpec, apiv1.Ingress) {
			for i, r := range p.Ingress {
				out.Ingress = append(out.Ingress, effectiveRule(p, i, r.From, r.Ports, peers))
			}
		}
		if HasType(p.PolicySpec, apiv1.Egress) {
			for i, r := range p.Egress {
				out.Egress = append(out.Egress, effectiveRule(p, i, r.To, r.Ports, peers))
			}
		}
	}
	return out
}

// peerCandidates returns the environments of env's project that a selector
// peer may resolve to, env's own version of itself included, sorted by id.
func peerCandidates(env apiv1.Environment, projectEnvs []apiv1.Environment) []apiv1.Environment {
	out := []apiv1.Environment{}
	if PeerEligible(env) {
		out = append(out, env)
	}
	for _, e := range projectEnvs {
		if e.ProjectID == env.ProjectID && e.ID != env.ID && PeerEligible(e) {
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
		if peer.EnvironmentSelector != nil {
			ep.Environments = candidates.resolve(*peer.EnvironmentSelector)
		}
		r.Peers = append(r.Peers, ep)
	}
	return r
}

// resolver resolves selector peers against one set of candidates,
// remembering each selector's answer: many rules share a few selectors,
// and a large project makes each resolution a scan of every environment.
type resolver struct {
	candidates []apiv1.Environment
	seen       map[string][]apiv1.PeerEnvironment
}

// resolve lists the candidates sel picks; it is never nil, so an empty
// result reads as "no environment matched", not "no selector". Rules with
// equal selectors share the returned slice.
func (r *resolver) resolve(sel apiv1.Selector) []apiv1.PeerEnvironment {
	key := selectorKey(sel)
	if out, ok := r.seen[key]; ok {
		return out
	}
	out := []apiv1.PeerEnvironment{}
	for _, e := range r.candidates {
		if Selects(sel, e.Labels) {
			out = append(out, peerView(e))
		}
	}
	r.seen[key] = out
	return out
}

// selectorKey is a selector's labels in key order, quoted so that no two
// selectors share a key.
func selectorKey(sel apiv1.Selector) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		b.WriteString(strconv.Quote(k))
		b.WriteString(strconv.Quote(sel.MatchLabels[k]))
	}
	return b.String()
}

func peerView(e apiv1.Environment) apiv1.PeerEnvironment {
	return apiv1.PeerEnvironment{ID: e.ID, Name: e.Name, Address: e.Enforcement.Address}
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
