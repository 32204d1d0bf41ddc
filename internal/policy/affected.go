package policy

import (
	"fmt"
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
//     its address, its named ports or its eligibility as a peer changed,
//     unless it is gone;
//   - every environment selected by a policy with a selector peer, in a
//     direction the policy enforces, whose view of the changed
//     environment differs (SeesChange).
//
// policies may be of any project (another project's matter through their
// project_selector peers, resolved with projects, the labels of projects
// by id); envs are the environments they may select, and may hold the
// changed environment in either version, or not at all.
func AffectedByEnvironment(before, after *apiv1.Environment, policies []apiv1.Policy, envs []apiv1.Environment, projects map[string]map[string]string) []string {
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
		if SeesChange(p, before, after, projects) {
			ids = append(ids, SelectedEnvironments(p, current)...)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func selfChanged(before, after apiv1.Environment) bool {
	return !maps.Equal(before.Labels, after.Labels) ||
		before.Enforcement.Address != after.Enforcement.Address ||
		PeerEligible(before) != PeerEligible(after) ||
		namedPorts(&before) != namedPorts(&after)
}

// SeesChange reports whether any selector peer of p's enforced rules
// resolves differently for the changed environment: it matched before or
// after, and its match, name, address or named ports are not the same.
func SeesChange(p apiv1.Policy, before, after *apiv1.Environment, projects map[string]map[string]string) bool {
	for _, peer := range SelectorPeers(p) {
		if seenAs(p, peer, before, projects) != seenAs(p, peer, after, projects) {
			return true
		}
	}
	return false
}

// seen is what a selector peer contributes to effective policies about an
// environment: nothing, or its id, name, address and named ports.
type seen struct {
	view  apiv1.PeerEnvironment
	ports string
}

func seenAs(p apiv1.Policy, peer apiv1.Peer, e *apiv1.Environment, projects map[string]map[string]string) seen {
	if e == nil || !PeerEligible(*e) {
		return seen{}
	}
	r := resolver{env: apiv1.Environment{ProjectID: p.ProjectID}, projects: projects}
	if !r.picks(peer, *e) {
		return seen{}
	}
	return seen{peerView(*e, *e), namedPorts(e)}
}

// namedPorts is e's named ports in one comparable string.
func namedPorts(e *apiv1.Environment) string {
	if e.Workload == nil {
		return ""
	}
	return fmt.Sprint(e.Workload.Ports)
}

// SelectorPeers lists the selector peers of p, in the directions p's
// policy_types enforces. An egress rule without peers whose ports name a
// port counts as AnyEnvironment: its names resolve against every
// environment it may send to.
func SelectorPeers(p apiv1.Policy) []apiv1.Peer {
	var out []apiv1.Peer
	add := func(peers []apiv1.Peer) {
		for _, peer := range peers {
			if peer.IsSelector() {
				out = append(out, peer)
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
			if len(r.To) == 0 && slices.ContainsFunc(r.Ports, func(port apiv1.Port) bool { return port.PortName != "" }) {
				out = append(out, AnyEnvironment)
			}
		}
	}
	return out
}

// AnyEnvironment is the peer of every environment of every project: where
// an egress rule without peers sends, for resolving its named ports, as
// Kubernetes resolves them against every destination pod.
var AnyEnvironment = apiv1.Peer{ProjectSelector: &apiv1.Selector{MatchLabels: map[string]string{}}}

// CrossProject reports whether p has a project_selector peer, so that
// environments and labels of other projects change what it allows.
func CrossProject(p apiv1.Policy) bool {
	return slices.ContainsFunc(SelectorPeers(p), func(peer apiv1.Peer) bool { return peer.ProjectSelector != nil })
}

// ProjectFlips reports whether a project_selector peer of p picks the
// project before its change and not after, or after and not before: then
// what p selects must be enforced again.
func ProjectFlips(p apiv1.Policy, before, after apiv1.Project) bool {
	return slices.ContainsFunc(SelectorPeers(p), func(peer apiv1.Peer) bool {
		ps := peer.ProjectSelector
		return ps != nil && Selects(*ps, before.Labels) != Selects(*ps, after.Labels)
	})
}
