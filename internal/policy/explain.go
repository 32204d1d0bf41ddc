package policy

import (
	"fmt"
	"strings"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Explanations of check answers. They name policies and rules of the
// environment's own project and the packet's own address, never the
// environments a selector resolved to, so they reveal nothing a caller who
// may run the check cannot read.

// maxNamed bounds the policies and rules an explanation lists, so that
// a denial among a thousand policies stays a sentence.
const maxNamed = 3

// nearMisses are the rules (indexes into a direction's rules) that allow
// the packet's peer on other ports, and those that allow its port to
// other peers.
type nearMisses struct {
	samePeer, samePort []int
}

// appendUpTo remembers a near miss while fewer than maxNamed are: an
// explanation names no more.
func appendUpTo(s []int, i int) []int {
	if len(s) < maxNamed {
		return append(s, i)
	}
	return s
}

// denial says why no rule of d allows req.
func (d direction) denial(req apiv1.CheckRequest, proto string, near nearMisses) string {
	if len(d.policies) == 0 {
		return "no policy selects this environment for " + d.name
	}
	who := "policy " + d.policies[0] + " selects it"
	if len(d.policies) > 1 {
		who = "policies " + listNames(d.policies) + " select it"
	}
	if len(d.rules) == 0 {
		return fmt.Sprintf("%s for %s with no %s rules, so it allows no %s", who, d.name, d.name, d.name)
	}
	packet := describePacket(proto, req.Port)
	side := map[string]string{apiv1.Ingress: "from", apiv1.Egress: "to"}[d.name]
	out := fmt.Sprintf("%s; no rule allows %s %s %s", who, packet, side, req.Address)
	var hints []string
	for _, i := range near.samePeer {
		ru := d.rules[i]
		hints = append(hints, fmt.Sprintf("%s allows %s %s the same peer", ruleName(ru.match), describePorts(ru.ports), side))
	}
	if len(hints) == 0 {
		for _, i := range near.samePort {
			hints = append(hints, fmt.Sprintf("%s allows %s, %s other peers", ruleName(d.rules[i].match), packet, side))
		}
	}
	if len(hints) > 0 {
		out += " (" + strings.Join(hints, "; ") + ")"
	}
	return out
}

func ruleName(m apiv1.Match) string {
	return fmt.Sprintf("rule %d of %s", m.RuleIndex, cmpOr(m.PolicyName, m.PolicyID))
}

// listRules names every rule: an allowed answer names all that allow it.
func listRules(ms []apiv1.Match) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = ruleName(m)
	}
	return joinAnd(names)
}

// listNames names at most maxNamed of names and counts the rest.
func listNames(names []string) string {
	if len(names) > maxNamed {
		return strings.Join(names[:maxNamed], ", ") + fmt.Sprintf(" and %d others", len(names)-maxNamed)
	}
	return joinAnd(names)
}

func joinAnd(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// describePacket is "tcp/22", or "icmp".
func describePacket(proto string, port int) string {
	if proto == apiv1.ProtocolICMP || port == 0 {
		return proto
	}
	return fmt.Sprintf("%s/%d", proto, port)
}

// describePorts is a rule's ports as "tcp/443, udp/8000-9000"; no ports
// means every port.
func describePorts(ports []apiv1.Port) string {
	if len(ports) == 0 {
		return "every port"
	}
	out := make([]string, len(ports))
	for i, p := range ports {
		switch {
		case p.Port == nil:
			out[i] = p.Protocol
		case p.EndPort != nil:
			out[i] = fmt.Sprintf("%s/%d-%d", p.Protocol, *p.Port, *p.EndPort)
		default:
			out[i] = fmt.Sprintf("%s/%d", p.Protocol, *p.Port)
		}
	}
	return strings.Join(out, ", ")
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
