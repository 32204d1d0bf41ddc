package netns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The guard: what the router namespace holds for all environments alike,
// in two tables named with the prefix.
//
// A bridge-family table checks every frame on an environment's port. Peer
// environments are named by address in policies, and the bridge forwards
// by hardware address, so an environment sending as another (from its
// address, or its hardware address) would get what that one is allowed,
// or its traffic; the guard drops such frames before the bridge learns
// from them or anyone receives them.
//
//	table bridge <prefix> {
//		set ports  { type ifname }                the environments' ports
//		set macs   { type ifname . ether_addr }   each port's hardware address
//		set src_v4 { type ifname . ipv4_addr }    each port's addresses
//		set src_v6 { type ifname . ipv6_addr }    (and its link-local one)
//		chain prerouting { frames from a port: from its hardware address; ARP from its hardware and IPv4 address;
//		                   IP from its addresses; neighbour advertisements for its addresses; else drop }
//		chain forward    { frames from a port to a port: IP only to the receiver's addresses, or neighbour
//		                   discovery; else drop }
//	}
//
// Frames the router sends to a port itself need no such check: it finds
// hardware addresses by ARP and neighbour discovery, which the guard
// keeps truthful.
//
// The inet table's shared part sends each packet to its environment's
// chains (see nft.go): by its source address, which only its port may
// send from, and by its destination address, which only its port may
// receive.
//
//	table inet <prefix> {
//		map from_v4 { type ipv4_addr : verdict }   address: jump <env>_from
//		map from_v6 { type ipv6_addr : verdict }
//		map to_v4   { type ipv4_addr : verdict }   address: jump <env>_to
//		map to_v6   { type ipv6_addr : verdict }
//		chain prerouting  { neighbour discovery accept; from the bridge: ip saddr vmap @from_v4,
//		                    ip6 saddr vmap @from_v6, else drop }
//		chain postrouting { neighbour discovery accept; ip daddr vmap @to_v4; ip6 daddr vmap @to_v6 }
//	}
//
// A port's elements in all of them change in one transaction, so a port
// is either guarded and judged, or sends nothing at all.

// guard is the router namespace's shared tables; its lock serializes the
// transactions of concurrent provisions.
type guard struct {
	mu        sync.Mutex
	ns        netns.NsHandle // the router's
	table     string
	resolvers []netip.Addr // the DNS proxy's addresses (dns.go)
	conn      *nftables.Conn
	sets      [guardSetCount]*nftables.Set
}

const (
	guardPorts = iota
	guardMACs
	guardSrc4
	guardSrc6
	guardFrom4
	guardFrom6
	guardTo4
	guardTo6
	guardSetCount
)

// guardSetID numbers the guard's sets in a batch, clear of the IDs the
// rule sets take (nft.go).
const guardSetID = 100

// port is what the guard knows of one environment's port.
type port struct {
	mac   net.HardwareAddr
	addrs []netip.Addr // its addresses, link-local included
}

func newGuard(ns netns.NsHandle, table, bridge string, resolvers []netip.Addr) (*guard, error) {
	g := &guard{ns: ns, table: table, resolvers: resolvers}
	if err := g.reopen(); err != nil {
		return nil, err
	}
	br := &nftables.Table{Name: table, Family: nftables.TableFamilyBridge}
	in := inetTable(table)
	vmap := func(name string, key nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{Table: in, Name: name, KeyType: key, IsMap: true, DataType: nftables.TypeVerdict}
	}
	g.sets = [guardSetCount]*nftables.Set{
		guardPorts: {Table: br, Name: "ports", KeyType: nftables.TypeIFName},
		guardMACs:  {Table: br, Name: "macs", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr), Concatenation: true},
		guardSrc4:  {Table: br, Name: "src_v4", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr), Concatenation: true},
		guardSrc6:  {Table: br, Name: "src_v6", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr), Concatenation: true},
		guardFrom4: vmap("from_v4", nftables.TypeIPAddr),
		guardFrom6: vmap("from_v6", nftables.TypeIP6Addr),
		guardTo4:   vmap("to_v4", nftables.TypeIPAddr),
		guardTo6:   vmap("to_v6", nftables.TypeIP6Addr),
	}
	for i, s := range g.sets {
		s.ID = uint32(guardSetID + i)
	}
	if err := g.install(bridge); err != nil {
		return nil, errors.Join(err, g.conn.CloseLasting())
	}
	return g, nil
}

// install declares the guard's tables, sets and base chains, and makes
// the chains hold their rules: at start, and again when someone flushed
// or deleted them (drift.go). Set elements that exist stay.
func (g *guard) install(bridge string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.conn
	br, in := g.sets[guardPorts].Table, g.sets[guardFrom4].Table
	c.AddTable(br)
	c.AddTable(in)
	for _, s := range g.sets {
		if err := c.AddSet(s, nil); err != nil {
			return g.recover(err)
		}
	}
	accept := nftables.ChainPolicyAccept
	chains := []baseChain{
		{br, "prerouting", nftables.ChainHookPrerouting, -200, g.fromPortRules()},
		{br, "forward", nftables.ChainHookForward, -200, g.toPortRules()},
	}
	for _, bc := range baseChains(bridge, g.resolvers...) {
		bc.table = in
		chains = append(chains, bc)
	}
	for _, spec := range chains {
		ch := c.AddChain(&nftables.Chain{Name: spec.name, Table: spec.table, Type: nftables.ChainTypeFilter,
			Hooknum: spec.hook, Priority: nftables.ChainPriorityRef(spec.priority), Policy: &accept})
		c.FlushChain(ch)
		for _, r := range spec.rules {
			c.AddRule(&nftables.Rule{Table: spec.table, Chain: ch, Exprs: r.exprs})
		}
	}
	if err := c.Flush(); err != nil {
		return g.recover(fmt.Errorf("guard tables: %w", err))
	}
	return nil
}

// close lets the connection go: a failure to close it leaves nothing the
// driver could act on.
func (g *guard) close() { _ = g.conn.CloseLasting() }

// reopen replaces the connection: after a failure it may hold half a batch.
func (g *guard) reopen() error {
	if g.conn != nil {
		_ = g.conn.CloseLasting() // as in close
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(g.ns)), nftables.AsLasting(), nftables.WithSockOptions(socketBuffers(batchBytes(0))))
	g.conn = c
	return err
}

// baseChain is one of the guard's base chains, shared by every
// environment.
type baseChain struct {
	table    *nftables.Table
	name     string
	hook     *nftables.ChainHook
	priority nftables.ChainPriority
	rules    []chainRule
}

// resolverRules accept the packets of flows an environment starts to
// port 53 (udp and tcp) of one of the router's resolver addresses, the
// DNS proxy: its queries on the way in (ct direction original, from the
// bridge), the proxy's answers on the way out (reply). Nothing else of
// the router is reachable.
func resolverRules(fromBridge []expr.Any, fromText string, resolvers []netip.Addr, reply bool) []chainRule {
	var rules []chainRule
	dir, dirText := byte(0), "original"
	var in []expr.Any
	inText := ""
	if reply {
		dir, dirText = 1, "reply"
	} else {
		in, inText = fromBridge, fromText
	}
	for _, a := range resolvers {
		fam, famText := byte(unix.NFPROTO_IPV4), "ip"
		if a.Is6() {
			fam, famText = unix.NFPROTO_IPV6, "ip6"
		}
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			rules = append(rules, chainRule{
				fmt.Sprintf("%sct direction %s ct original %s daddr %s ct protocol %s ct original proto-dst 53 accept", inText, dirText, famText, a, protoName(proto)),
				concat(in, []expr.Any{
					&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{fam}},
					&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{dir}},
					&expr.Ct{Key: expr.CtKeyDST, Register: reg1, Direction: 0},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: a.AsSlice()},
					&expr.Ct{Key: expr.CtKeyPROTOCOL, Register: reg1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
					&expr.Ct{Key: expr.CtKeyPROTODST, Register: reg1, Direction: 0},
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0, 53}},
					&expr.Verdict{Kind: expr.VerdictAccept},
				}),
			})
		}
	}
	return rules
}

// baseChains are the inet table's base chains, at filter priority (after
// conntrack): packets that came off the bridge, and packets to any
// environment's address. The bridge hands the inet hooks its packets with
// itself as the interface, not the port (br_netfilter), so a packet's
// environment is found by its address: its source on the way in, its
// destination on the way out; the bridge table lets a port send only
// from its own addresses, and receive only to them. Their rules name the
// maps by name only, so they read the same in any batch.
func baseChains(bridge string, resolvers ...netip.Addr) []baseChain {
	byAddr := func(nfproto byte, off, n uint32, vmap string) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: reg1, IsDestRegSet: true, DestRegister: 0, SetName: vmap},
		}
	}
	fromBridge := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ifname(bridge)},
	}
	in := fmt.Sprintf("iifname %q ", bridge)
	return []baseChain{
		{name: "prerouting", hook: nftables.ChainHookPrerouting, rules: slices.Concat([]chainRule{ndRule()}, resolverRules(fromBridge, in, resolvers, false), []chainRule{
			{in + "ip saddr vmap @from_v4", concat(fromBridge, byAddr(unix.NFPROTO_IPV4, 12, 4, "from_v4"))},
			{in + "ip6 saddr vmap @from_v6", concat(fromBridge, byAddr(unix.NFPROTO_IPV6, 8, 16, "from_v6"))},
			// Nothing else comes off the bridge but what the guard
			// missed: fail closed.
			{in + "drop", concat(fromBridge, []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})},
		})},
		{name: "postrouting", hook: nftables.ChainHookPostrouting, rules: slices.Concat([]chainRule{
			refusalRule(),
			ndRule(),
		}, resolverRules(nil, "", resolvers, true), []chainRule{
			{"ip daddr vmap @to_v4", byAddr(unix.NFPROTO_IPV4, 16, 4, "to_v4")},
			{"ip6 daddr vmap @to_v6", byAddr(unix.NFPROTO_IPV6, 24, 16, "to_v6")},
		})},
	}
}

// Pieces of the bridge table's rules.
var (
	bridgeAccept = &expr.Verdict{Kind: expr.VerdictAccept}
	bridgeDrop   = &expr.Verdict{Kind: expr.VerdictDrop}
)

func etherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, t)},
	}
}

// icmp6Type matches an ICMPv6 message of a type in lo..hi.
func icmp6Type(lo, hi byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{lo}, ToData: []byte{hi}},
	}
}

// portHas looks up "<port> . <n bytes at off of base>" in set; the port
// is the input interface (in) or the output one.
func portHas(in bool, base expr.PayloadBase, off, n uint32, set *nftables.Set, invert bool) []expr.Any {
	key := expr.MetaKeyOIFNAME
	if in {
		key = expr.MetaKeyIIFNAME
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Payload{DestRegister: reg32_00 + 4, Base: base, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID, Invert: invert},
	}
}

func ip6Prefix(p netip.Prefix, off uint32) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 16},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16, Mask: prefixNet(p).Mask, Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: p.Addr().AsSlice()},
	}
}

func concat(parts ...[]expr.Any) []expr.Any { return slices.Concat(parts...) }

// fromPortRules check the frames environments send.
func (g *guard) fromPortRules() []chainRule {
	nh, th := expr.PayloadBaseNetworkHeader, expr.PayloadBaseTransportHeader
	s := g.sets
	return []chainRule{
		{"iifname != @ports drop", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: s[guardPorts].Name, SetID: s[guardPorts].ID, Invert: true},
			bridgeDrop,
		}},
		{"iifname . ether saddr != @macs drop", concat(portHas(true, expr.PayloadBaseLLHeader, 6, 6, s[guardMACs], true), []expr.Any{bridgeDrop})},
		// Ethernet and IPv4 ARP only, so the addresses sit where the rule reads them.
		{"ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 iifname . arp saddr ether @macs iifname . arp saddr ip @src_v4 accept", concat(
			etherType(unix.ETH_P_ARP),
			[]expr.Any{
				&expr.Payload{DestRegister: reg1, Base: nh, Offset: 0, Len: 6},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0, 1, 8, 0, 6, 4}},
			},
			portHas(true, nh, 8, 6, s[guardMACs], false),
			portHas(true, nh, 14, 4, s[guardSrc4], false),
			[]expr.Any{bridgeAccept})},
		{"ether type ip iifname . ip saddr @src_v4 accept", concat(etherType(unix.ETH_P_IP), portHas(true, nh, 12, 4, s[guardSrc4], false), []expr.Any{bridgeAccept})},
		// A neighbour advertisement tells others where an address is: only
		// for the port's own, or it would draw another's traffic.
		{"ether type ip6 icmpv6 type nd-neighbor-advert iifname . icmpv6 nd target != @src_v6 drop", concat(
			etherType(unix.ETH_P_IPV6), icmp6Type(136, 136), portHas(true, th, 8, 16, s[guardSrc6], true), []expr.Any{bridgeDrop})},
		{"ether type ip6 iifname . ip6 saddr @src_v6 accept", concat(etherType(unix.ETH_P_IPV6), portHas(true, nh, 8, 16, s[guardSrc6], false), []expr.Any{bridgeAccept})},
		// Duplicate address detection, for the port's own addresses.
		{"ether type ip6 ip6 saddr :: icmpv6 type nd-neighbor-solicit iifname . icmpv6 nd target @src_v6 accept", concat(
			etherType(unix.ETH_P_IPV6), ip6Prefix(netip.MustParsePrefix("::/128"), 8), icmp6Type(135, 135), portHas(true, th, 8, 16, s[guardSrc6], false), []expr.Any{bridgeAccept})},
		{"drop", []expr.Any{bridgeDrop}},
	}
}

// toPortRules check the frames environments receive: an environment's
// rules are found by its address, so a port must receive no IP packet
// addressed to another.
func (g *guard) toPortRules() []chainRule {
	nh := expr.PayloadBaseNetworkHeader
	s := g.sets
	return []chainRule{
		{"oifname != @ports accept", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: s[guardPorts].Name, SetID: s[guardPorts].ID, Invert: true},
			bridgeAccept,
		}},
		{"ether type arp accept", concat(etherType(unix.ETH_P_ARP), []expr.Any{bridgeAccept})},
		{"ether type ip oifname . ip daddr @src_v4 accept", concat(etherType(unix.ETH_P_IP), portHas(false, nh, 16, 4, s[guardSrc4], false), []expr.Any{bridgeAccept})},
		{"ether type ip6 oifname . ip6 daddr @src_v6 accept", concat(etherType(unix.ETH_P_IPV6), portHas(false, nh, 24, 16, s[guardSrc6], false), []expr.Any{bridgeAccept})},
		{"ether type ip6 ip6 daddr ff02::/16 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept", concat(
			etherType(unix.ETH_P_IPV6), ip6Prefix(netip.MustParsePrefix("ff02::/16"), 24), icmp6Type(135, 136), []expr.Any{bridgeAccept})},
		{"drop", []expr.Any{bridgeDrop}},
	}
}

// elements are what the guard holds for name, one slice per set.
func (p port) elements(name string) [guardSetCount][]nftables.SetElement {
	var out [guardSetCount][]nftables.SetElement
	key := ifname(name)
	out[guardPorts] = []nftables.SetElement{{Key: key}}
	out[guardMACs] = []nftables.SetElement{{Key: slices.Concat(key, p.mac, []byte{0, 0})}}
	from := &expr.Verdict{Kind: expr.VerdictJump, Chain: envObject(name, chainFrom)}
	to := &expr.Verdict{Kind: expr.VerdictJump, Chain: envObject(name, chainTo)}
	for _, a := range p.addrs {
		sets := [3]int{guardSrc4, guardFrom4, guardTo4}
		if a.Is6() {
			sets = [3]int{guardSrc6, guardFrom6, guardTo6}
		}
		out[sets[0]] = append(out[sets[0]], nftables.SetElement{Key: slices.Concat(key, a.AsSlice())})
		out[sets[1]] = append(out[sets[1]], nftables.SetElement{Key: a.AsSlice(), VerdictData: from})
		out[sets[2]] = append(out[sets[2]], nftables.SetElement{Key: a.AsSlice(), VerdictData: to})
	}
	return out
}

// allow makes the guard know name as p, and no longer as old (when given
// and different). Adding an element that exists changes nothing; an
// address another port holds is refused.
func (g *guard) allow(name string, p port, old *port) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover(g.queueAllow(name, p, old))
}

func (g *guard) queueAllow(name string, p port, old *port) error {
	if old != nil && (!bytes.Equal(old.mac, p.mac) || !slices.Equal(old.addrs, p.addrs)) {
		// Adding first makes the delete valid whether or not they exist.
		for i, elems := range old.elements(name) {
			if i == guardPorts {
				continue
			}
			if err := g.conn.SetAddElements(g.sets[i], elems); err != nil {
				return err
			}
			if err := g.conn.SetDeleteElements(g.sets[i], elems); err != nil {
				return err
			}
		}
	}
	for i, elems := range p.elements(name) {
		if err := g.conn.SetAddElements(g.sets[i], elems); err != nil {
			return err
		}
	}
	return g.flush()
}

// forget removes every element of name, whatever it had, and what more
// queues (the environment's own objects) in the same transaction.
func (g *guard) forget(name string, more func(*nftables.Conn) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover(g.queueForget(name, more))
}

func (g *guard) queueForget(name string, more func(*nftables.Conn) error) error {
	key := ifname(name)
	// The bridge table's elements start with the port's name; the maps
	// are keyed by the addresses those elements name.
	addrs := map[string]bool{}
	for i, s := range g.sets {
		if i == guardFrom4 || i == guardFrom6 || i == guardTo4 || i == guardTo6 {
			continue
		}
		elems, err := g.conn.GetSetElements(s)
		if err != nil {
			return err
		}
		var mine []nftables.SetElement
		for _, e := range elems {
			if bytes.HasPrefix(e.Key, key) {
				mine = append(mine, nftables.SetElement{Key: e.Key})
				if i == guardSrc4 || i == guardSrc6 {
					addrs[string(e.Key[len(key):])] = true
				}
			}
		}
		if len(mine) > 0 {
			if err := g.conn.SetDeleteElements(s, mine); err != nil {
				return err
			}
		}
	}
	for _, i := range []int{guardFrom4, guardFrom6, guardTo4, guardTo6} {
		elems, err := g.conn.GetSetElements(g.sets[i])
		if err != nil {
			return err
		}
		var mine []nftables.SetElement
		for _, e := range elems {
			if addrs[string(e.Key)] {
				mine = append(mine, nftables.SetElement{Key: e.Key})
			}
		}
		if len(mine) > 0 {
			if err := g.conn.SetDeleteElements(g.sets[i], mine); err != nil {
				return err
			}
		}
	}
	if err := more(g.conn); err != nil {
		return err
	}
	return g.flush()
}

// reset makes the guard know exactly ports (name to port), and queues
// more (removing what belongs to no port), in one transaction.
func (g *guard) reset(ports map[string]port, more func(*nftables.Conn) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover(g.queueReset(ports, more))
}

func (g *guard) queueReset(ports map[string]port, more func(*nftables.Conn) error) error {
	var all [guardSetCount][]nftables.SetElement
	for name, p := range ports {
		for i, elems := range p.elements(name) {
			all[i] = append(all[i], elems...)
		}
	}
	for i, s := range g.sets {
		g.conn.FlushSet(s)
		for chunk := range slices.Chunk(all[i], elementsPerMessage) {
			if err := g.conn.SetAddElements(s, chunk); err != nil {
				return err
			}
		}
	}
	if err := more(g.conn); err != nil {
		return err
	}
	return g.flush()
}

// flush commits what is queued.
func (g *guard) flush() error {
	if err := g.conn.Flush(); err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	return nil
}

// recover passes err on, replacing the connection when there is one.
func (g *guard) recover(err error) error {
	if err != nil {
		if rerr := g.reopen(); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return err
}
