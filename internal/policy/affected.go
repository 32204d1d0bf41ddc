package policy

import (
	"maps"
	"reflect"
	"slices"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Which environments must be re-enforced after a change: those whose
// effective policy may differ because of it. Callers bump those
// environments' enforcement generation and let the reconciler apply.

// Affected returns the ids, sorted, of the environments in envs whose
// effective policy a policy change touches: those the policy selected
// before or selects after. before is nil for a creation and after is nil
// for a deletion. A change that only edits the description (or
// bookkeeping such as generation and timestamps) touches none.
//
// The policy's peers are not affected: rules are enforced at the
// environments the policy selects, as in Kubernetes.
func Affected(before, after *apiv1.Policy, envs []apiv1.Environment) []string {
	if before != nil && after != nil && sameRules(*before, *after) {
		return nil
	}
	var ids []string
	for _, p := range []*apiv1.Policy{before, after} {
		if p != nil {
			ids = append(ids, SelectedEnvironments(*p, envs)...)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// sameRules reports whether two versions of a policy produce the same
// effective policies everywhere.
func sameRules(a, b apiv1.Policy) bool {
	key := func(p apiv1.Policy) apiv1.Policy {
		return apiv1.Policy{
			ID:                 p.ID,
			ProjectID:          p.ProjectID,
			OwnerEnvironmentID: p.OwnerEnvironmentID,
			PolicySpec: apiv1.PolicySpec{
				Name:                p.Name,
				EnvironmentSelector: p.EnvironmentSelector,
				PolicyTypes:         p.PolicyTypes,
				Ingress:             p.Ingress,
				Egress:              p.Egress,
			}.Normalize(),
		}
	}
	return reflect.DeepEqual(key(a), key(b))
}

// AffectedByEnvironment returns the ids, sorted, of the environments whose
// effective policy a change to one environment touches (before is nil for
// a creation, after nil for a deletion; both have the same id):
//   - the environment itself, when its labels (which policies select it),
//     its address or its eligibility as a peer changed, unless it is gone;
//   - every environment of its project selected by a policy with an
//     environment_selector peer, in a direction the policy enforces, whose
//     view of the changed environment differs: it matched before or after,
//     and its match, name or address is not the same.
//
// policies and envs are the project's (others are ignored); envs may hold
// the changed environment in either version, or not at all.
func AffectedByEnvironment(before, after *apiv1.Environment, policies []apiv1.Policy, envs []apiv1.Environment) []string {
	changed := after
	if changed == nil {
		changed = before
	}
	if changed == nil {
		return nil
	}
	// The other environments, plus the changed one as it is now.
	current := make([]apiv1.Environment, 0, len(envs)+1)
	for _, e := range envs {
		if e.ID != changed.ID {
			current = append(current, e)
		}
	}
	if after != nil {
		current = append(current, *after)
	}

	var ids []string
	if after != nil && (before == nil || selfChanged(*before, *after)) {
		ids = append(ids, after.ID)
	}
	for _, p := range policies {
		if p.ProjectID != changed.ProjectID {
			continue
		}
		if peerSelectorsSeeChange(p, before, after) {
			ids = append(ids, SelectedEnvironments(p, current)...)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func selfChanged(before, after apiv1.Environment) bool {
	return !maps.Equal(before.Labels, after.Labels) ||
		before.Enforcement.Address != after.Enforcement.Address ||
		PeerEligible(before) != PeerEligible(after)
}

// peerSelectorsSeeChange reports whether any environment_selector peer of
// p's enforced rules resolves differently for the changed environment.
func peerSelectorsSeeChange(p apiv1.Policy, before, after *apiv1.Environment) bool {
	for _, sel := range peerSelectors(p) {
		if seenAs(sel, before) != seenAs(sel, after) {
			return true
		}
	}
	return false
}

// seenAs is what a selector peer contributes to effective policies about
// e: nothing, or e's id, name and address.
func seenAs(sel apiv1.Selector, e *apiv1.Environment) apiv1.PeerEnvironment {
	if e == nil || !PeerEligible(*e) || !Selects(sel, e.Labels) {
		return apiv1.PeerEnvironment{}
	}
	return peerView(*e)
}

// peerSelectors lists the environment selectors of p's peers, in the
// directions p's policy_types enforces.
func peerSelectors(p apiv1.Policy) []apiv1.Selector {
	var out []apiv1.Selector
	add := func(peers []apiv1.Peer) {
		for _, peer := range peers {
			if peer.EnvironmentSelector != nil {
				out = append(out, *peer.EnvironmentSelector)
			}
		}
	}
	if HasType(p.PolicySpec, apiv1.Ingress) {
		for _, r := range p.Ingress {
			add(r.From)
		}
	}
	if HasType(p.PolicySpec, apiv1.Egress) {
		for _, r := range p.Egress {
			add(r.To)
		}
	}
	return out
}
