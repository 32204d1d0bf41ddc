package netns

import (
	"cmp"
	"net/netip"
	"slices"
)

// Interval arithmetic for rendering rules into nftables interval sets. The
// kernel rejects overlapping elements, so everything here produces
// disjoint, merged intervals; merging also keeps the sets small.

// span is an inclusive range of addresses of one family.
type span struct{ lo, hi netip.Addr }

// portSpan is an inclusive range of ports.
type portSpan struct{ lo, hi uint16 }

var allPorts = portSpan{0, 65535}

// box is a span of addresses, one IP protocol and a range of ports: one
// element of a concatenated "address . protocol . port" set.
type box struct {
	addr  span
	proto uint8
	ports portSpan
}

// after returns the address following a, and false when a is the last
// address of its family.
func after(a netip.Addr) (netip.Addr, bool) {
	n := a.Next()
	return n, n.IsValid()
}

func prefixSpan(p netip.Prefix) span {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	hi, _ := netip.AddrFromSlice(b)
	return span{p.Addr(), hi}
}

func familySpan(v6 bool) span {
	if v6 {
		return prefixSpan(netip.MustParsePrefix("::/0"))
	}
	return prefixSpan(netip.MustParsePrefix("0.0.0.0/0"))
}

// mergeSpans sorts spans and joins those that overlap or touch.
func mergeSpans(in []span) []span {
	if len(in) == 0 {
		return nil
	}
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b span) int { return a.lo.Compare(b.lo) })
	out := []span{s[0]}
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		next, ok := after(last.hi)
		if !ok || x.lo.Compare(next) <= 0 {
			if x.hi.Compare(last.hi) > 0 {
				last.hi = x.hi
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

// subtract removes holes from s; holes of another family are ignored.
func subtract(s span, holes []span) []span {
	var same []span
	for _, h := range holes {
		if h.lo.Is4() == s.lo.Is4() {
			same = append(same, h)
		}
	}
	var out []span
	cur := s.lo
	for _, h := range mergeSpans(same) {
		if h.hi.Compare(cur) < 0 {
			continue
		}
		if h.lo.Compare(s.hi) > 0 {
			break
		}
		if h.lo.Compare(cur) > 0 {
			out = append(out, span{cur, h.lo.Prev()})
		}
		next, ok := after(h.hi)
		if !ok || next.Compare(s.hi) > 0 {
			return out
		}
		cur = next
	}
	return append(out, span{cur, s.hi})
}

// mergePorts sorts port ranges and joins those that overlap or touch.
func mergePorts(in []portSpan) []portSpan {
	if len(in) == 0 {
		return nil
	}
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b portSpan) int { return cmp.Compare(a.lo, b.lo) })
	out := []portSpan{s[0]}
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if int(x.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	return out
}

// disjointBoxes returns boxes covering exactly the union of in, none
// overlapping another, sorted by protocol then address. For each protocol
// it sweeps the address line: between two consecutive box edges the set of
// allowed ports is constant, and neighbouring stretches with equal port
// sets are joined again.
func disjointBoxes(in []box) []box {
	byProto := map[uint8][]box{}
	for _, b := range in {
		byProto[b.proto] = append(byProto[b.proto], b)
	}
	protos := make([]uint8, 0, len(byProto))
	for p := range byProto {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	var out []box
	for _, p := range protos {
		out = append(out, sweep(p, byProto[p])...)
	}
	return out
}

type edge struct {
	at    netip.Addr
	open  bool
	ports portSpan
}

type stretch struct {
	addr  span
	ports []portSpan
}

func sweep(proto uint8, boxes []box) []box {
	var edges []edge
	for _, b := range boxes {
		edges = append(edges, edge{at: b.addr.lo, open: true, ports: b.ports})
		if end, ok := after(b.addr.hi); ok {
			edges = append(edges, edge{at: end, ports: b.ports})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int { return a.at.Compare(b.at) })
	active := map[portSpan]int{}
	var stretches []stretch
	for i := 0; i < len(edges); {
		at := edges[i].at
		for ; i < len(edges) && edges[i].at == at; i++ {
			if edges[i].open {
				active[edges[i].ports]++
			} else if active[edges[i].ports]--; active[edges[i].ports] == 0 {
				delete(active, edges[i].ports)
			}
		}
		if len(active) == 0 {
			continue
		}
		hi := familySpan(!at.Is4()).hi
		if i < len(edges) {
			hi = edges[i].at.Prev()
		}
		ports := make([]portSpan, 0, len(active))
		for ps := range active {
			ports = append(ports, ps)
		}
		ports = mergePorts(ports)
		if n := len(stretches); n > 0 {
			last := &stretches[n-1]
			if next, ok := after(last.addr.hi); ok && next == at && slices.Equal(last.ports, ports) {
				last.addr.hi = hi
				continue
			}
		}
		stretches = append(stretches, stretch{span{at, hi}, ports})
	}
	var out []box
	for _, s := range stretches {
		for _, ps := range s.ports {
			out = append(out, box{addr: s.addr, proto: proto, ports: ps})
		}
	}
	return out
}
