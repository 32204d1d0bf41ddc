package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The guard: a bridge-family table in the router namespace that lets an
// environment send only from its own addresses. Peer environments are
// named by address in policies, so an environment sending from another's
// address would get whatever that one is allowed; the guard drops such
// frames before they reach anyone.
//
//	table bridge <prefix> {
//		set ports  { type ifname }               the environments' veths
//		set src_v4 { type ifname . ipv4_addr }   which port may use which address
//		set src_v6 { type ifname . ipv6_addr }
//		chain prerouting { policy accept; frames from the ports not sourced from their own addresses are dropped }
//	}

// guard is the router namespace's guard table; its lock serializes the
// transactions of concurrent provisions.
type guard struct {
	mu    sync.Mutex
	ns    netns.NsHandle // the router's
	table string
	conn  *nftables.Conn
	sets  [3]*nftables.Set // ports, src_v4, src_v6
}

const (
	guardPorts = iota
	guardSrc4
	guardSrc6
)

func newGuard(ns netns.NsHandle, table string) (*guard, error) {
	g := &guard{ns: ns, table: table}
	if err := g.reopen(); err != nil {
		return nil, err
	}
	c := g.conn
	t := c.AddTable(&nftables.Table{Name: table, Family: nftables.TableFamilyBridge})
	g.sets = [3]*nftables.Set{
		{Table: t, ID: 1, Name: "ports", KeyType: nftables.TypeIFName},
		{Table: t, ID: 2, Name: "src_v4", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr), Concatenation: true},
		{Table: t, ID: 3, Name: "src_v6", KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr), Concatenation: true},
	}
	for _, s := range g.sets {
		if err := c.AddSet(s, nil); err != nil {
			return nil, err
		}
	}
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: &accept})
	c.FlushChain(ch)
	for _, r := range g.rules() {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs})
	}
	if err := c.Flush(); err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("guard table: %w", err)
	}
	return g, nil
}

func (g *guard) close() { g.conn.CloseLasting() }

// reopen replaces the connection: after a failure it may hold half a batch.
func (g *guard) reopen() error {
	if g.conn != nil {
		g.conn.CloseLasting()
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(g.ns)), nftables.AsLasting(), nftables.WithSockOptions(socketBuffers(batchBytes(0))))
	g.conn = c
	return err
}

func (g *guard) rules() []chainRule {
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	etherType := func(t uint16) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(t >> 8), byte(t)}},
		}
	}
	// iifname . <address at offset off, len n> @set
	fromOwn := func(off, n uint32, set *nftables.Set) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Payload{DestRegister: reg32_00 + 4, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID},
			accept,
		}
	}
	ip6Prefix := func(p netip.Prefix) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16, Mask: prefixNet(p).Mask, Xor: make([]byte, 16)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: p.Addr().AsSlice()},
			accept,
		}
	}
	return []chainRule{
		{"iifname != @ports accept", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: g.sets[guardPorts].Name, SetID: g.sets[guardPorts].ID, Invert: true},
			accept,
		}},
		{"ether type arp iifname . arp saddr ip @src_v4 accept", append(etherType(unix.ETH_P_ARP), fromOwn(14, 4, g.sets[guardSrc4])...)},
		{"ether type ip iifname . ip saddr @src_v4 accept", append(etherType(unix.ETH_P_IP), fromOwn(12, 4, g.sets[guardSrc4])...)},
		{"ether type ip6 iifname . ip6 saddr @src_v6 accept", append(etherType(unix.ETH_P_IPV6), fromOwn(8, 16, g.sets[guardSrc6])...)},
		// Link-local and unspecified sources carry neighbour discovery
		// and duplicate address detection; no policy names them.
		{"ether type ip6 ip6 saddr fe80::/10 accept", append(etherType(unix.ETH_P_IPV6), ip6Prefix(netip.MustParsePrefix("fe80::/10"))...)},
		{"ether type ip6 ip6 saddr :: accept", append(etherType(unix.ETH_P_IPV6), ip6Prefix(netip.MustParsePrefix("::/128"))...)},
		{"drop", []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}},
	}
}

// elements are what lets port send from addrs.
func guardElements(port string, addrs []netip.Addr) [3][]nftables.SetElement {
	var out [3][]nftables.SetElement
	name := ifname(port)
	out[guardPorts] = []nftables.SetElement{{Key: name}}
	for _, a := range addrs {
		k := append(slices.Clone(name), a.AsSlice()...)
		if a.Is4() {
			out[guardSrc4] = append(out[guardSrc4], nftables.SetElement{Key: k})
		} else {
			out[guardSrc6] = append(out[guardSrc6], nftables.SetElement{Key: k})
		}
	}
	return out
}

// allow lets port send from addrs, and no longer from old (when given).
// Adding an element that exists changes nothing.
func (g *guard) allow(port string, addrs, old []netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover(g.queueAllow(port, addrs, old))
}

func (g *guard) queueAllow(port string, addrs, old []netip.Addr) error {
	if len(old) > 0 && !slices.Equal(old, addrs) {
		if err := g.queueRemove(port, old); err != nil {
			return err
		}
	}
	for i, elems := range guardElements(port, addrs) {
		if len(elems) > 0 {
			if err := g.conn.SetAddElements(g.sets[i], elems); err != nil {
				return err
			}
		}
	}
	return g.flush()
}

// forget removes every element of port, whatever addresses it had.
func (g *guard) forget(port string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover(g.queueForget(port))
}

func (g *guard) queueForget(port string) error {
	name := ifname(port)
	for i, s := range g.sets {
		elems, err := g.conn.GetSetElements(s)
		if err != nil {
			return err
		}
		var mine []nftables.SetElement
		for _, e := range elems {
			if len(e.Key) >= len(name) && slices.Equal(e.Key[:len(name)], name) {
				mine = append(mine, nftables.SetElement{Key: e.Key})
			}
		}
		if len(mine) > 0 {
			if err := g.conn.SetDeleteElements(g.sets[i], mine); err != nil {
				return err
			}
		}
	}
	return g.flush()
}

// queueRemove queues the removal of port's elements for addrs. Adding
// first makes the delete valid whether or not they exist.
func (g *guard) queueRemove(port string, addrs []netip.Addr) error {
	for i, elems := range guardElements(port, addrs) {
		if i == guardPorts || len(elems) == 0 {
			continue
		}
		if err := g.conn.SetAddElements(g.sets[i], elems); err != nil {
			return err
		}
		if err := g.conn.SetDeleteElements(g.sets[i], elems); err != nil {
			return err
		}
	}
	return nil
}

// reset makes the guard allow exactly what ports says (port to addresses),
// in one transaction.
func (g *guard) reset(ports map[string][]netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover(g.queueReset(ports))
}

func (g *guard) queueReset(ports map[string][]netip.Addr) error {
	var all [3][]nftables.SetElement
	for port, addrs := range ports {
		for i, elems := range guardElements(port, addrs) {
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
