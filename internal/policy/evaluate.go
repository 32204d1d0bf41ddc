package policy

import (
	"net/netip"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Ruleset is an effective policy compiled for answering checks: prefixes
// and addresses are parsed once. Drivers that answer many checks keep one
// per environment. It is immutable and safe for concurrent use.
type Ruleset struct {
	ingress, egress []rule
}

type rule struct {
	match   apiv1.Match
	anyPeer bool
	peers   []peer
	anyPort bool
	ports   []apiv1.Port
}

// peer matches an address by CIDR (minus its exceptions) or by being one
// of the addresses its environment selector resolved to.
type peer struct {
	cidr   netip.Prefix
	except []netip.Prefix
	addrs  []netip.Addr
}

func (p peer) matches(a netip.Addr) bool {
	for _, x := range p.addrs {
		if x == a {
			return true
		}
	}
	if !p.cidr.IsValid() || !p.cidr.Contains(a) {
		return false
	}
	for _, x := range p.except {
		if x.Contains(a) {
			return false
		}
	}
	return true
}

// Compile prepares p for Check. Entries that do not parse (p is normally
// built from validated specs) match nothing, so a bad entry never widens
// what is allowed.
func Compile(p apiv1.EffectivePolicy) *Ruleset {
	return &Ruleset{
		ingress: compileRules(apiv1.Ingress, p.Ingress),
		egress:  compileRules(apiv1.Egress, p.Egress),
	}
}

func compileRules(direction string, rules []apiv1.EffectiveRule) []rule {
	out := make([]rule, 0, len(rules))
	for _, r := range rules {
		c := rule{
			match:   apiv1.Match{PolicyID: r.PolicyID, PolicyName: r.PolicyName, Direction: direction, RuleIndex: r.RuleIndex},
			anyPeer: len(r.Peers) == 0,
			anyPort: len(r.Ports) == 0,
			ports:   apiv1.NormalizePorts(r.Ports),
		}
		for _, p := range r.Peers {
			c.peers = append(c.peers, compilePeer(p))
		}
		out = append(out, c)
	}
	return out
}

func compilePeer(p apiv1.EffectivePeer) peer {
	var c peer
	if p.EnvironmentSelector != nil {
		for _, e := range p.Environments {
			if a, err := parseAddr(e.Address); err == nil {
				c.addrs = append(c.addrs, a)
			}
		}
		return c
	}
	cidr, err := netip.ParsePrefix(p.CIDR)
	if err != nil {
		return c
	}
	c.cidr = cidr.Masked()
	for _, x := range p.Except {
		ex, err := netip.ParsePrefix(x)
		if err != nil {
			// An exception we cannot read would allow too much: drop the peer.
			return peer{}
		}
		c.except = append(c.except, ex.Masked())
	}
	return c
}

// parseAddr parses an address for comparison: IPv4-mapped IPv6 addresses
// become IPv4, and zones are dropped, so one host has one form.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap().WithZone(""), nil
}

// Check answers whether the rules allow req, and which rule did: the first
// that matches in merged order. An empty protocol means tcp. An address
// that does not parse matches only rules that allow any peer.
func (r *Ruleset) Check(req apiv1.CheckRequest) apiv1.CheckResult {
	rules := r.ingress
	switch req.Direction {
	case apiv1.Ingress:
	case apiv1.Egress:
		rules = r.egress
	default:
		return apiv1.CheckResult{}
	}
	addr, addrErr := parseAddr(req.Address)
	proto := req.Protocol
	if proto == "" {
		proto = apiv1.ProtocolTCP
	}
	for _, ru := range rules {
		if ru.allowsPort(proto, req.Port) && (ru.anyPeer || (addrErr == nil && ru.allowsAddr(addr))) {
			m := ru.match
			return apiv1.CheckResult{Allowed: true, Matched: &m}
		}
	}
	return apiv1.CheckResult{}
}

func (ru rule) allowsAddr(a netip.Addr) bool {
	for _, p := range ru.peers {
		if p.matches(a) {
			return true
		}
	}
	return false
}

func (ru rule) allowsPort(proto string, port int) bool {
	if ru.anyPort {
		return true
	}
	for _, p := range ru.ports {
		if portMatches(p, proto, port) {
			return true
		}
	}
	return false
}

// portMatches applies one normalized port entry. icmp has no ports, so
// any numbers are ignored for it.
func portMatches(p apiv1.Port, proto string, port int) bool {
	switch {
	case p.Protocol != proto:
		return false
	case proto == apiv1.ProtocolICMP || p.Port == nil:
		return true
	case p.EndPort == nil:
		return port == *p.Port
	default:
		return *p.Port <= port && port <= *p.EndPort
	}
}

// Evaluate answers req against p. It compiles p on every call; keep a
// Ruleset to answer many.
func Evaluate(p apiv1.EffectivePolicy, req apiv1.CheckRequest) apiv1.CheckResult {
	return Compile(p).Check(req)
}
