package policy

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Ruleset is an effective policy compiled for answering checks: prefixes
// and addresses are parsed once. Drivers that answer many checks keep one
// per environment. It is immutable and safe for concurrent use.
type Ruleset struct {
	ingress, egress direction
}

// direction is one direction's rules, and the names of the policies that
// select the environment for it (for explanations).
type direction struct {
	name     string
	rules    []rule
	policies []string
	// byAddr indexes the selector peers: for each address they resolved
	// to, the rules (ascending) that name it, so a check looks an
	// address up once rather than in every rule.
	byAddr map[netip.Addr][]int
}

type rule struct {
	match   apiv1.Match
	anyPeer bool
	peers   []peer
	anyPort bool
	ports   []apiv1.Port // for explanations
	spans   []portSpan   // ports, compiled for matching
}

// portSpan is a port entry as numbers: a protocol and an inclusive range
// (every port when all).
type portSpan struct {
	proto  uint8
	all    bool
	lo, hi int
}

// protoCodes numbers the protocols a check may ask about; 0 is none.
var protoCodes = map[string]uint8{apiv1.ProtocolTCP: 1, apiv1.ProtocolUDP: 2, apiv1.ProtocolSCTP: 3, apiv1.ProtocolICMP: 4}

func compileSpan(p apiv1.Port) portSpan {
	s := portSpan{proto: protoCodes[p.Protocol], all: p.Protocol == apiv1.ProtocolICMP || p.Port == nil}
	if s.proto == 0 {
		s.proto = 255 // a protocol no check names: it matches nothing
	}
	if !s.all {
		s.lo, s.hi = *p.Port, *p.Port
		if p.EndPort != nil {
			s.hi = *p.EndPort
		}
	}
	return s
}

// peer matches an address by CIDR (minus its exceptions) or by being one
// of the addresses its environment selector resolved to.
type peer struct {
	cidr   netip.Prefix
	except []netip.Prefix
	addrs  []netip.Addr
}

func (p *peer) matches(a netip.Addr) bool {
	return slices.Contains(p.addrs, a) || p.cidrMatches(a)
}

func (p *peer) cidrMatches(a netip.Addr) bool {
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
		ingress: compileDirection(p, apiv1.Ingress, p.Ingress),
		egress:  compileDirection(p, apiv1.Egress, p.Egress),
	}
}

func compileDirection(p apiv1.EffectivePolicy, name string, rules []apiv1.EffectiveRule) direction {
	d := direction{name: name, rules: compileRules(name, rules), policies: selecting(p, name, rules), byAddr: map[netip.Addr][]int{}}
	for i := range d.rules {
		for _, pe := range d.rules[i].peers {
			for _, a := range pe.addrs {
				if hits := d.byAddr[a]; len(hits) == 0 || hits[len(hits)-1] != i {
					d.byAddr[a] = append(hits, i)
				}
			}
		}
	}
	return d
}

// selecting names the policies of p that select its environment for dir:
// those listing it in policy_types, or, for an effective policy built
// without them, those with rules in that direction.
func selecting(p apiv1.EffectivePolicy, dir string, rules []apiv1.EffectiveRule) []string {
	var out []string
	for _, ref := range p.Policies {
		if slices.Contains(ref.PolicyTypes, dir) || slices.ContainsFunc(rules, func(r apiv1.EffectiveRule) bool { return r.PolicyID == ref.ID }) {
			out = append(out, cmp.Or(ref.Name, ref.ID))
		}
	}
	return out
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
		for _, p := range c.ports {
			c.spans = append(c.spans, compileSpan(p))
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
	if p.IsSelector() {
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

// Check answers whether the rules allow req, which rules do (Matched is
// the first in merged order, Rules all of them) and why (Reason). An
// empty protocol means tcp. An address that does not parse matches only
// rules that allow any peer.
func (r *Ruleset) Check(req apiv1.CheckRequest) apiv1.CheckResult {
	d := r.ingress
	switch req.Direction {
	case apiv1.Ingress:
	case apiv1.Egress:
		d = r.egress
	default:
		return apiv1.CheckResult{Reason: "direction must be ingress or egress"}
	}
	addr, addrErr := parseAddr(req.Address)
	proto := req.Protocol
	if proto == "" {
		proto = apiv1.ProtocolTCP
	}
	var res apiv1.CheckResult
	var near nearMisses
	code := protoCodes[proto] // 0 for an unknown protocol: no port entry has it
	var hits []int            // the rules whose selector peers resolved to addr
	if addrErr == nil {
		hits = d.byAddr[addr]
	}
	for i := range d.rules {
		ru := &d.rules[i]
		portOK := ru.allowsPort(code, req.Port)
		for len(hits) > 0 && hits[0] < i {
			hits = hits[1:]
		}
		if !portOK && len(near.samePeer) == maxNamed {
			continue // neither allowed nor a near miss an explanation names
		}
		peerOK := ru.anyPeer || (len(hits) > 0 && hits[0] == i) || (addrErr == nil && ru.allowsCIDR(addr))
		switch {
		case portOK && peerOK:
			// A rule split per destination (named ports) appears once.
			if !slices.Contains(res.Rules, ru.match) {
				res.Rules = append(res.Rules, ru.match)
			}
		case peerOK:
			near.samePeer = appendUpTo(near.samePeer, i)
		case portOK:
			near.samePort = appendUpTo(near.samePort, i)
		}
	}
	if len(res.Rules) > 0 {
		res.Allowed = true
		m := res.Rules[0]
		res.Matched = &m
		res.Reason = "allowed by " + listRules(res.Rules)
		return res
	}
	res.Reason = d.denial(req, proto, near)
	return res
}

// allowsCIDR reports whether a CIDR peer of ru takes a; selector peers
// are looked up in the direction's byAddr.
func (ru *rule) allowsCIDR(a netip.Addr) bool {
	for i := range ru.peers {
		if ru.peers[i].cidrMatches(a) {
			return true
		}
	}
	return false
}

// allowsPort applies the rule's ports to a protocol (as protoCodes
// numbers it) and port. icmp has no ports, so any numbers are ignored
// for it.
func (ru *rule) allowsPort(proto uint8, port int) bool {
	if ru.anyPort {
		return true
	}
	for _, s := range ru.spans {
		if s.proto == proto && (s.all || (s.lo <= port && port <= s.hi)) {
			return true
		}
	}
	return false
}

// Evaluate answers req against p. It compiles p on every call; keep a
// Ruleset to answer many.
func Evaluate(p apiv1.EffectivePolicy, req apiv1.CheckRequest) apiv1.CheckResult {
	return Compile(p).Check(req)
}
