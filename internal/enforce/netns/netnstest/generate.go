package netnstest

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Generator makes random, valid policies and probes over a fixed universe
// of peers, labels and ports, for differential tests: cidrs with except
// blocks, environment selectors, single ports and ranges, every protocol,
// both directions, IPv4 and IPv6.
type Generator struct {
	R      *rand.Rand
	CIDRs  []apiv1.Peer        // cidr peers (with their excepts) to draw from
	Labels []map[string]string // match_labels to draw selectors from
	Ports  []int               // ports the listeners serve; ranges run between two of them
	// Names, when set, are fqdn peers (names and patterns) egress rules
	// draw from too.
	Names []string
}

// PolicySpec draws a policy spec called name. It panics if it draws an
// invalid one: that is a bug in the generator, not in what it tests.
func (g *Generator) PolicySpec(name string) apiv1.PolicySpec {
	spec := apiv1.PolicySpec{
		Name:                name,
		EnvironmentSelector: g.selector(),
		PolicyTypes:         [][]string{{apiv1.Ingress}, {apiv1.Egress}, {apiv1.Ingress, apiv1.Egress}}[g.R.IntN(3)],
	}
	for _, dir := range spec.PolicyTypes {
		for range g.R.IntN(4) {
			peers, ports := g.peers(dir), g.ports()
			if dir == apiv1.Ingress {
				spec.Ingress = append(spec.Ingress, apiv1.IngressRule{From: peers, Ports: ports})
			} else {
				spec.Egress = append(spec.Egress, apiv1.EgressRule{To: peers, Ports: ports})
			}
		}
	}
	if errs := spec.Validate(); len(errs) > 0 {
		panic(fmt.Sprintf("netnstest: generated an invalid policy %+v: %v", spec, errs))
	}
	return spec.Normalize()
}

func (g *Generator) selector() apiv1.Selector {
	if len(g.Labels) == 0 || g.R.IntN(4) == 0 {
		return apiv1.Selector{MatchLabels: map[string]string{}}
	}
	return apiv1.Selector{MatchLabels: g.Labels[g.R.IntN(len(g.Labels))]}
}

// peers draws up to three peers for direction dir; none (any peer) a
// quarter of the time.
func (g *Generator) peers(dir string) []apiv1.Peer {
	var out []apiv1.Peer
	if g.R.IntN(4) == 0 {
		return out
	}
	for range 1 + g.R.IntN(3) {
		if dir == apiv1.Egress && len(g.Names) > 0 && g.R.IntN(3) == 0 {
			out = append(out, apiv1.Peer{FQDN: g.Names[g.R.IntN(len(g.Names))]})
			continue
		}
		if len(g.Labels) > 0 && g.R.IntN(3) == 0 {
			sel := g.selector()
			out = append(out, apiv1.Peer{EnvironmentSelector: &sel})
			continue
		}
		p := g.CIDRs[g.R.IntN(len(g.CIDRs))]
		p.Except = slices.Clone(p.Except)
		out = append(out, p)
	}
	return out
}

// ports draws up to three ports; none (any port) a quarter of the time.
func (g *Generator) ports() []apiv1.Port {
	var out []apiv1.Port
	if g.R.IntN(4) == 0 {
		return out
	}
	for range 1 + g.R.IntN(3) {
		proto := []string{apiv1.ProtocolTCP, apiv1.ProtocolUDP, apiv1.ProtocolICMP}[g.R.IntN(3)]
		p := apiv1.Port{Protocol: proto}
		if proto != apiv1.ProtocolICMP {
			switch g.R.IntN(3) {
			case 0: // every port
			case 1:
				p.Port = ptr(g.Ports[g.R.IntN(len(g.Ports))])
			case 2:
				a, b := g.Ports[g.R.IntN(len(g.Ports))], g.Ports[g.R.IntN(len(g.Ports))]
				p.Port, p.EndPort = ptr(min(a, b)), ptr(max(a, b))
			}
		}
		out = append(out, p)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// Probes draws n probes between ends: same address family, never from an
// environment to itself, never between two ends outside every
// environment.
func (g *Generator) Probes(ends []Endpoint, n int) []Probe {
	out := make([]Probe, 0, n)
	for len(out) < n {
		from, to := ends[g.R.IntN(len(ends))], ends[g.R.IntN(len(ends))]
		if from.Addr.Is4() != to.Addr.Is4() || from.Namespace == to.Namespace || (from.Env == "" && to.Env == "") {
			continue
		}
		p := Probe{From: from, To: to, Protocol: []string{apiv1.ProtocolTCP, apiv1.ProtocolUDP, apiv1.ProtocolICMP}[g.R.IntN(3)]}
		if p.Protocol != apiv1.ProtocolICMP {
			p.Port = g.Ports[g.R.IntN(len(g.Ports))]
		}
		out = append(out, p)
	}
	return out
}
