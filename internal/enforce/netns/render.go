package netns

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// ruleset is an effective policy rendered into the contents of nftables
// sets: for each direction and address family, the remote addresses
// allowed on every protocol, and the disjoint "address . protocol . port"
// boxes allowed on specific ones. The chains that consult the sets are
// fixed, so a packet costs the same few lookups however many policies
// apply.
type ruleset struct {
	dirs [2]dirSets // ingress, egress
}

const (
	dirIngress = 0
	dirEgress  = 1
	famV4      = 0
	famV6      = 1
)

type dirSets struct {
	any [2][]span // v4, v6
	l4  [2][]box  // v4, v6
}

// render turns p into set contents. It refuses entries it cannot read
// rather than skipping them: the caller keeps the rules it had, which is
// never more permissive than what was asked.
func render(p apiv1.EffectivePolicy) (*ruleset, error) {
	rs := &ruleset{}
	for dir, rules := range [2][]apiv1.EffectiveRule{p.Ingress, p.Egress} {
		name := [2]string{apiv1.Ingress, apiv1.Egress}[dir]
		var any [2][]span
		var l4 [2][]box
		for i, r := range rules {
			field := fmt.Sprintf("%s[%d] (policy %s rule %d)", name, i, r.PolicyID, r.RuleIndex)
			peers, err := peerSpans(r.Peers)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			if len(r.Ports) == 0 {
				for f := range peers {
					any[f] = append(any[f], peers[f]...)
				}
				continue
			}
			for _, port := range r.Ports {
				for f := range peers {
					proto, ports, err := protoPorts(port, f == famV6)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", field, err)
					}
					for _, s := range peers[f] {
						l4[f] = append(l4[f], box{addr: s, proto: proto, ports: ports})
					}
				}
			}
		}
		for f := range 2 {
			rs.dirs[dir].any[f] = mergeSpans(any[f])
			rs.dirs[dir].l4[f] = disjointBoxes(l4[f])
		}
	}
	return rs, nil
}

// peerSpans resolves a rule's peers to address spans by family. No peers
// means every address.
func peerSpans(peers []apiv1.EffectivePeer) ([2][]span, error) {
	var out [2][]span
	if len(peers) == 0 {
		return [2][]span{{familySpan(false)}, {familySpan(true)}}, nil
	}
	for _, p := range peers {
		if p.FQDN != "" {
			continue // allowed by the addresses its names resolve to (fqdn.go)
		}
		if p.IsSelector() {
			for _, e := range p.Environments {
				if e.Address == "" {
					continue // not placed yet: nothing to allow
				}
				a, err := netip.ParseAddr(e.Address)
				if err != nil {
					return out, fmt.Errorf("environment %s has address %q: %w", e.ID, e.Address, err)
				}
				a = a.Unmap().WithZone("")
				out[family(a)] = append(out[family(a)], span{a, a})
			}
			continue
		}
		cidr, err := netip.ParsePrefix(p.CIDR)
		if err != nil {
			return out, fmt.Errorf("cidr %q: %w", p.CIDR, err)
		}
		var holes []span
		for _, x := range p.Except {
			ex, err := netip.ParsePrefix(x)
			if err != nil {
				return out, fmt.Errorf("except %q: %w", x, err)
			}
			holes = append(holes, prefixSpan(ex))
		}
		f := family(cidr.Addr())
		out[f] = append(out[f], subtract(prefixSpan(cidr), holes)...)
	}
	return out, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return famV4
	}
	return famV6
}

// protoPorts maps an API port entry to an IP protocol number and a port
// range. icmp means ICMPv6 towards IPv6 peers, and has no ports: its box
// spans every value of the bytes where a port would be.
func protoPorts(p apiv1.Port, v6 bool) (uint8, portSpan, error) {
	switch p.Protocol {
	case apiv1.ProtocolICMP:
		if v6 {
			return unix.IPPROTO_ICMPV6, allPorts, nil
		}
		return unix.IPPROTO_ICMP, allPorts, nil
	case "", apiv1.ProtocolTCP, apiv1.ProtocolUDP, apiv1.ProtocolSCTP:
	default:
		return 0, portSpan{}, fmt.Errorf("unknown protocol %q", p.Protocol)
	}
	if p.PortName != "" {
		// Named ports are resolved with the effective policy; one left
		// here would read as every port.
		return 0, portSpan{}, fmt.Errorf("port %q is not resolved to a number", p.PortName)
	}
	proto := uint8(unix.IPPROTO_TCP)
	switch p.Protocol {
	case apiv1.ProtocolUDP:
		proto = unix.IPPROTO_UDP
	case apiv1.ProtocolSCTP:
		proto = unix.IPPROTO_SCTP
	}
	if p.Port == nil {
		return proto, allPorts, nil
	}
	lo, hi := *p.Port, *p.Port
	if p.EndPort != nil {
		hi = *p.EndPort
	}
	if lo < 0 || hi > 65535 || hi < lo {
		return 0, portSpan{}, fmt.Errorf("port range %d-%d is not within 0-65535", lo, hi)
	}
	return proto, portSpan{uint16(lo), uint16(hi)}, nil //nolint:gosec // G115: checked within 0-65535 above
}

// elementCount is how many set elements the ruleset needs.
func (rs *ruleset) elementCount() int {
	n := 0
	for _, d := range rs.dirs {
		for f := range 2 {
			n += len(d.any[f]) + len(d.l4[f])
		}
	}
	return n
}

// text renders env's part of the router's inet table in nft's syntax, as
// `nft list table` would show it, after the base chains every
// environment shares: for people reading a failure or debugging a host.
func (rs *ruleset) text(table, env string, resolvers ...netip.Addr) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	for _, c := range baseChains(names{prefix: table}.bridge(), resolvers...) {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy accept;\n", c.name, c.name)
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.text)
		}
		b.WriteString("\t}\n")
	}
	for _, s := range setLayout {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n", envObject(env, s.name), s.typeName())
		if elems := rs.elementText(s); len(elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ",\n\t\t\t     "))
		}
		b.WriteString("\t}\n")
	}
	fq := fqdnSets(nil, env)
	for fam, s := range fq[:2] {
		fmt.Fprintf(&b, "\tmap %s {\n\t\ttype %s . inet_proto . inet_service : mark\n\t\tflags interval, timeout\n\t}\n", s.Name, [2]string{"ipv4_addr", "ipv6_addr"}[fam])
	}
	fmt.Fprintf(&b, "\tset %s {\n\t\ttype mark\n\t}\n", envObject(env, fqdnEpoch))
	sets := layoutSets(&nftables.Table{Name: table}, env)
	for _, c := range chainLayout {
		fmt.Fprintf(&b, "\tchain %s {\n", envObject(env, c.name))
		for _, r := range c.rules(env, sets) {
			fmt.Fprintf(&b, "\t\t%s\n", r.text)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (rs *ruleset) elementText(s setSpec) []string {
	var out []string
	d := rs.dirs[s.dir]
	if !s.ports {
		for _, sp := range d.any[s.fam] {
			out = append(out, spanText(sp))
		}
		return out
	}
	for _, bx := range d.l4[s.fam] {
		ports := fmt.Sprint(bx.ports.lo)
		if bx.ports.hi != bx.ports.lo {
			ports += fmt.Sprintf("-%d", bx.ports.hi)
		}
		out = append(out, fmt.Sprintf("%s . %s . %s", spanText(bx.addr), protoName(bx.proto), ports))
	}
	return out
}

func spanText(s span) string {
	if s.lo == s.hi {
		return s.lo.String()
	}
	for bits := 0; bits <= s.lo.BitLen(); bits++ {
		if p := netip.PrefixFrom(s.lo, bits); p.Masked().Addr() == s.lo && prefixSpan(p).hi == s.hi {
			return p.String()
		}
	}
	return s.lo.String() + "-" + s.hi.String()
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "ipv6-icmp"
	}
	return fmt.Sprint(p)
}
