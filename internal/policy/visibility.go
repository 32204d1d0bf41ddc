package policy

import "github.com/isolationhq/terraform-provider-isolation/internal/apiv1"

// Redact returns eff as a caller reads it who sees only the projects for
// which sees is true: each selector peer keeps the environments of its
// own project and of projects the caller sees, and counts the others in
// Hidden, so a project_selector never tells a caller the names or
// addresses of a project it may not read. eff is left as it is (its
// slices may be shared, see EffectiveAcross); drivers enforce the whole.
func Redact(eff apiv1.EffectivePolicy, sees func(projectID string) bool) apiv1.EffectivePolicy {
	eff.Ingress = redactRules(eff.Ingress, sees)
	eff.Egress = redactRules(eff.Egress, sees)
	return eff
}

func redactRules(rules []apiv1.EffectiveRule, sees func(string) bool) []apiv1.EffectiveRule {
	out := make([]apiv1.EffectiveRule, len(rules))
	for i, r := range rules {
		peers := make([]apiv1.EffectivePeer, len(r.Peers))
		for j, p := range r.Peers {
			if p.IsSelector() {
				p.Environments, p.Hidden = visiblePeers(p.Environments, sees)
			}
			peers[j] = p
		}
		r.Peers = peers
		out[i] = r
	}
	return out
}

// visiblePeers splits envs into those the caller may read (ProjectID ""
// is the policy's own project) and a count of the rest. The result is a
// new slice, never nil for a selector peer.
func visiblePeers(envs []apiv1.PeerEnvironment, sees func(string) bool) ([]apiv1.PeerEnvironment, int) {
	out := make([]apiv1.PeerEnvironment, 0, len(envs))
	hidden := 0
	for _, e := range envs {
		if e.ProjectID == "" || sees(e.ProjectID) {
			out = append(out, e)
		} else {
			hidden++
		}
	}
	return out, hidden
}
