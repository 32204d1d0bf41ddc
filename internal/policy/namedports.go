package policy

import (
	"slices"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Named ports are resolved here, when the effective policy is computed, as
// Kubernetes resolves a rule's named port against each destination pod's
// container ports: drivers and checks then only ever see numbers.

// ingressRules resolves r's named ports against the environment the
// policy is for, the destination of every ingress packet.
func (res *resolver) ingressRules(r apiv1.EffectiveRule) []apiv1.EffectiveRule {
	numbered, named := splitNamed(r.Ports)
	if len(named) == 0 {
		return []apiv1.EffectiveRule{r}
	}
	r.Ports = append(numbered, resolvePorts(named, res.env.Workload)...)
	if len(r.Ports) == 0 {
		return nil
	}
	return []apiv1.EffectiveRule{r}
}

// egressRules resolves r's named ports against each destination: the
// numbered ports stay one rule for every peer, and each peer environment
// declaring one of the names gets a rule of its own with those numbers.
// Addresses outside environments (cidr and fqdn peers) declare no names.
// A rule without peers sends anywhere: its named ports resolve against
// every environment the candidates hold (AnyEnvironment).
func (res *resolver) egressRules(r apiv1.EffectiveRule) []apiv1.EffectiveRule {
	numbered, named := splitNamed(r.Ports)
	if len(named) == 0 {
		return []apiv1.EffectiveRule{r}
	}
	var out []apiv1.EffectiveRule
	if len(numbered) > 0 {
		whole := r
		whole.Ports = numbered
		out = append(out, whole)
	}
	peers := r.Peers
	if len(peers) == 0 {
		peers = []apiv1.EffectivePeer{{Peer: AnyEnvironment, Environments: res.resolve(AnyEnvironment)}}
	}
	seen := map[string]bool{}
	for _, p := range peers {
		for _, dst := range p.Environments {
			if seen[dst.ID] {
				continue
			}
			seen[dst.ID] = true
			e := res.byID[dst.ID]
			ports := resolvePorts(named, e.Workload)
			if len(ports) == 0 {
				continue
			}
			one := r
			one.Peers = []apiv1.EffectivePeer{{Peer: p.Peer, Environments: []apiv1.PeerEnvironment{dst}}}
			one.Ports = ports
			one.Warnings = nil
			out = append(out, one)
		}
	}
	return out
}

// splitNamed separates numbered ports from named ones.
func splitNamed(ports []apiv1.Port) (numbered, named []apiv1.Port) {
	if !slices.ContainsFunc(ports, func(p apiv1.Port) bool { return p.PortName != "" }) {
		return ports, nil
	}
	numbered = []apiv1.Port{}
	for _, p := range ports {
		if p.PortName != "" {
			named = append(named, p)
		} else {
			numbered = append(numbered, p)
		}
	}
	return numbered, named
}

// resolvePorts is the numbers w declares for named; names it does not
// declare (for that protocol) are dropped.
func resolvePorts(named []apiv1.Port, w *apiv1.Workload) []apiv1.Port {
	var out []apiv1.Port
	for _, p := range named {
		var spec *apiv1.WorkloadSpec
		if w != nil {
			spec = &w.WorkloadSpec
		}
		if n, ok := spec.NamedPort(p.PortName, p.Protocol); ok {
			out = append(out, apiv1.Port{Protocol: p.Protocol, Port: &n})
		}
	}
	return out
}
