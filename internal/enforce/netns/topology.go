package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The topology: one router namespace holding a bridge, and per environment
// a namespace joined to the bridge by a veth pair. The bridge carries the
// pool's gateway address, so environments reach each other on one link and
// anything the router namespace is connected to through the gateway. The
// host's own namespace is never touched.

// router is the driver's open handles on its router namespace.
type router struct {
	ns     netns.NsHandle
	nl     *netlink.Handle
	bridge int // the bridge's ifindex
	guard  *guard
}

func (r *router) close() {
	if r.guard != nil {
		r.guard.close()
	}
	if r.nl != nil {
		r.nl.Close()
	}
	r.ns.Close()
}

// openOrCreate opens the namespace called name, creating it when missing.
func openOrCreate(name string) (h netns.NsHandle, created bool, err error) {
	h, err = openNamed(name)
	if err == nil {
		return h, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return h, false, fmt.Errorf("open namespace %s: %w", name, err)
	}
	// Clear a file left by a crash before the mount, then make it anew.
	if err := deleteNamed(name); err != nil {
		return h, false, err
	}
	if err := createNamed(name); err != nil {
		return h, false, err
	}
	h, err = openNamed(name)
	if err != nil {
		return h, false, fmt.Errorf("open namespace %s: %w", name, err)
	}
	return h, true, nil
}

// openRouter adopts or creates the router namespace and its bridge.
func (d *Driver) openRouter() (*router, error) {
	h, _, err := openOrCreate(d.names.router())
	if err != nil {
		return nil, err
	}
	r := &router{ns: h}
	if err := d.setUpRouter(r); err != nil {
		r.close()
		return nil, fmt.Errorf("router namespace %s: %w", d.names.router(), err)
	}
	return r, nil
}

func (d *Driver) setUpRouter(r *router) error {
	var err error
	if r.nl, err = netlink.NewHandleAt(r.ns, unix.NETLINK_ROUTE); err != nil {
		return err
	}
	// The router forwards, and its link-local addresses must be usable at
	// once: while one is tentative (duplicate address detection, about a
	// second) the kernel sends no neighbour solicitation for a forwarded
	// packet, and IPv6 through the router silently stalls.
	sysctls := [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}
	for _, kv := range append(sysctls, denySysctls...) {
		if err := writeSysctl(r.ns, kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := linkUp(r.nl, "lo"); err != nil {
		return err
	}
	br, err := r.nl.LinkByName(d.names.bridge())
	if isNotFound(err) {
		// Without a multicast querier on the link, snooping would only
		// get in the way of IPv6 neighbour discovery.
		off := false
		attrs := netlink.LinkAttrs{Name: d.names.bridge(), HardwareAddr: macFor(d.gateways()[0].Addr())}
		err = r.nl.LinkAdd(&netlink.Bridge{LinkAttrs: attrs, MulticastSnooping: &off})
		if err == nil {
			br, err = r.nl.LinkByName(d.names.bridge())
		}
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", d.names.bridge(), err)
	}
	r.bridge = br.Attrs().Index
	if err := setAddrs(r.nl, br, d.gateways()); err != nil {
		return fmt.Errorf("bridge %s: %w", d.names.bridge(), err)
	}
	if err := r.nl.LinkSetUp(br); err != nil {
		return err
	}
	// The rules judge flows, with conntrack, in the inet family: the
	// bridge must hand them the IP packets it carries (br_netfilter). Its
	// switches are per namespace; this one is the driver's.
	for _, key := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
		if err := writeSysctl(r.ns, key, "1"); err != nil {
			return fmt.Errorf("%w: the kernel needs bridge netfilter (CONFIG_BRIDGE_NETFILTER, `modprobe br_netfilter`)", err)
		}
	}
	if r.guard, err = newGuard(r.ns, d.names.table(), d.names.bridge(), d.resolverAddrs()); err != nil {
		return err
	}
	return d.keepBridgeUp(r)
}

// keepBridgeUp gives the bridge a port of its own, a veth pair that never
// goes away, and waits until the bridge is operational. A bridge without
// ports has no carrier, and the kernel applies a bridge's carrier change
// up to a second later (linkwatch does not hurry for it); until then the
// bridge drops what the router sends, so the first environment after
// every empty spell would be unreachable for that second.
func (d *Driver) keepBridgeUp(r *router) error {
	port := d.names.bridgePort()
	if _, err := r.nl.LinkByName(port); isNotFound(err) {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: r.bridge}, PeerName: port + "x"}
		if err := r.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("bridge port %s: %w", port, err)
		}
	} else if err != nil {
		return err
	}
	for _, name := range []string{port, port + "x"} {
		if err := linkUp(r.nl, name); err != nil {
			return err
		}
	}
	return waitOperational(5*time.Second, linkRef{r.nl, d.names.bridge()})
}

// gateways are the router's addresses on the bridge: the first host of
// each pool.
func (d *Driver) gateways() []netip.Prefix {
	gw := netip.PrefixFrom(d.cfg.Pool.Masked().Addr().Next(), d.cfg.Pool.Bits())
	out := []netip.Prefix{gw}
	if d.cfg.Pool6.IsValid() {
		out = append(out, netip.PrefixFrom(d.v6For(gw.Addr()), d.cfg.Pool6.Bits()))
	}
	return out
}

// envAddrs are an environment's addresses: its own, and with Pool6 the
// IPv6 address that carries it in the low 32 bits.
func (d *Driver) envAddrs(a netip.Addr) []netip.Prefix {
	out := []netip.Prefix{netip.PrefixFrom(a, d.cfg.Pool.Bits())}
	if d.cfg.Pool6.IsValid() {
		out = append(out, netip.PrefixFrom(d.v6For(a), d.cfg.Pool6.Bits()))
	}
	return out
}

func (d *Driver) v6For(a netip.Addr) netip.Addr {
	b := d.cfg.Pool6.Masked().Addr().As16()
	v4 := a.As4()
	copy(b[12:], v4[:])
	return netip.AddrFrom16(b)
}

// wireEnv makes e's namespace look as it should: loopback up, a veth pair
// between the router's bridge and the namespace's eth0, e's addresses on
// eth0 and default routes through the gateways. It repairs whatever part
// is missing or wrong and leaves the rest alone.
func (d *Driver) wireEnv(r *router, e *env) error {
	nl, err := netlink.NewHandleAt(e.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer nl.Close()
	if err := linkUp(nl, "lo"); err != nil {
		return err
	}
	// The guard learns the environment's addresses before its veth can
	// carry a frame: its first ARP request must not be dropped.
	want := d.portFor(e.addr)
	if err := r.guard.allow(e.name, want, e.guarded); err != nil {
		return err
	}
	e.guarded = &want
	inner, innerErr := nl.LinkByName(envIfName)
	host, hostErr := r.nl.LinkByName(e.name)
	if innerErr != nil || hostErr != nil {
		if !isNotFound(innerErr) && innerErr != nil {
			return innerErr
		}
		if !isNotFound(hostErr) && hostErr != nil {
			return hostErr
		}
		// Half a pair cannot be mended: a veth end whose peer is
		// gone is deleted and the pair made again.
		if innerErr == nil {
			if err := nl.LinkDel(inner); err != nil {
				return fmt.Errorf("delete stale %s: %w", envIfName, err)
			}
		}
		if hostErr == nil {
			if err := r.nl.LinkDel(host); err != nil {
				return fmt.Errorf("delete stale %s: %w", e.name, err)
			}
		}
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: e.name, MasterIndex: r.bridge},
			PeerName:         envIfName,
			PeerHardwareAddr: macFor(e.addr),
			PeerNamespace:    netlink.NsFd(int(e.ns)),
		}
		if err := r.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", e.name, err)
		}
		if host, err = r.nl.LinkByName(e.name); err != nil {
			return err
		}
		if inner, err = nl.LinkByName(envIfName); err != nil {
			return err
		}
	}
	if mac := macFor(e.addr); !bytes.Equal(inner.Attrs().HardwareAddr, mac) {
		if err := nl.LinkSetHardwareAddr(inner, mac); err != nil {
			return fmt.Errorf("hardware address of %s: %w", envIfName, err)
		}
	}
	if host.Attrs().MasterIndex != r.bridge {
		if err := r.nl.LinkSetMasterByIndex(host, r.bridge); err != nil {
			return fmt.Errorf("attach %s to the bridge: %w", e.name, err)
		}
	}
	if err := pinPort(r.nl, host, want.mac); err != nil {
		return fmt.Errorf("pin %s: %w", e.name, err)
	}
	if err := r.nl.LinkSetUp(host); err != nil {
		return err
	}
	if err := setAddrs(nl, inner, d.envAddrs(e.addr)); err != nil {
		return err
	}
	if err := nl.LinkSetUp(inner); err != nil {
		return err
	}
	for _, gw := range d.gateways() {
		route := &netlink.Route{LinkIndex: inner.Attrs().Index, Gw: net.IP(gw.Addr().AsSlice())}
		if err := nl.RouteReplace(route); err != nil {
			return fmt.Errorf("default route via %s: %w", gw.Addr(), err)
		}
	}
	if err := waitOperational(5*time.Second, linkRef{nl, envIfName}, linkRef{r.nl, e.name}); err != nil {
		return err
	}
	return waitJoined(e.ns, d.envAddrs(e.addr), 5*time.Second)
}

// waitJoined waits until the namespace's eth0 listens on the
// solicited-node multicast group of each of its IPv6 addresses. The
// kernel joins them from a work queue some time after the link comes up,
// and until then drops the neighbour solicitations sent to them: the
// first peer to look an address up would wait a second for its retry.
func waitJoined(h netns.NsHandle, addrs []netip.Prefix, timeout time.Duration) error {
	var want []string
	for _, p := range addrs {
		if a := p.Addr(); a.Is6() {
			b := a.As16()
			want = append(want, fmt.Sprintf("ff0200000000000000000001ff%02x%02x%02x", b[13], b[14], b[15]))
		}
	}
	deadline := time.Now().Add(timeout)
	for pause := 100 * time.Microsecond; len(want) > 0; pause = min(2*pause, 10*time.Millisecond) {
		var groups []byte
		err := inNamespace(h, func() (err error) {
			// /proc/net is the process's view; the thread's is under thread-self.
			groups, err = os.ReadFile("/proc/thread-self/net/igmp6")
			return err
		})
		if err != nil {
			return err
		}
		joined := map[string]bool{}
		for _, line := range strings.Split(string(groups), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[1] == envIfName {
				joined[f[2]] = true
			}
		}
		want = slices.DeleteFunc(want, func(g string) bool { return joined[g] })
		if len(want) > 0 && time.Now().After(deadline) {
			return fmt.Errorf("%s has not joined multicast groups %v after %v", envIfName, want, timeout)
		}
		if len(want) > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// portFor is what the guard knows of the port of the environment at a:
// its hardware address, its addresses and the link-local address the
// kernel derives from the hardware address.
func (d *Driver) portFor(a netip.Addr) port {
	mac := macFor(a)
	return port{mac: mac, addrs: append(d.Addresses(a), linkLocal(mac))}
}

// linkLocal is the IPv6 link-local address the kernel gives an interface
// with hardware address mac (modified EUI-64).
func linkLocal(mac net.HardwareAddr) netip.Addr {
	b := [16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
	return netip.AddrFrom16(b)
}

// pinPort makes the bridge send mac to port and nowhere else, whatever
// frames claim: the bridge does not learn on the port (the guard drops
// frames from any other hardware address anyway), a static forwarding
// entry says where mac is, and frames for hardware addresses nobody
// owns are not flooded to it. Entries for any other address go.
func pinPort(nl *netlink.Handle, link netlink.Link, mac net.HardwareAddr) error {
	if err := nl.LinkSetLearning(link, false); err != nil {
		return fmt.Errorf("learning off: %w", err)
	}
	if err := nl.LinkSetFlood(link, false); err != nil {
		return fmt.Errorf("unicast flooding off: %w", err)
	}
	entries, err := nl.NeighList(link.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return err
	}
	for _, n := range entries {
		if n.State&unix.NUD_PERMANENT == 0 && !bytes.Equal(n.HardwareAddr, mac) && n.Vlan == 0 {
			if err := nl.NeighDel(&n); err != nil {
				return fmt.Errorf("forwarding entry %s: %w", n.HardwareAddr, err)
			}
		}
	}
	fdb := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: unix.AF_BRIDGE, State: unix.NUD_NOARP,
		Flags: netlink.NTF_MASTER | netlink.NTF_STICKY, HardwareAddr: mac}
	if err := nl.NeighSet(fdb); err != nil {
		return fmt.Errorf("static forwarding entry %s: %w", mac, err)
	}
	return nil
}

type linkRef struct {
	nl   *netlink.Handle
	name string
}

// waitOperational waits until every link reports operational state up.
// The kernel's linkwatch turns a veth's carrier into a working queue and
// a forwarding bridge port some time after the link is set up: usually
// within a millisecond, but up to seconds while namespaces are being torn
// down (it waits for the same lock). Until then packets are dropped, so an
// environment is not ready before.
//
// Polling, because the alternative, a link subscription, cannot be
// stopped while it blocks in receive; the wait is short and bounded.
func waitOperational(timeout time.Duration, links ...linkRef) error {
	deadline := time.Now().Add(timeout)
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		var notUp []string
		for _, l := range links {
			link, err := l.nl.LinkByName(l.name)
			if err != nil {
				return err
			}
			if link.Attrs().OperState != netlink.OperUp {
				notUp = append(notUp, fmt.Sprintf("%s is %s", l.name, link.Attrs().OperState))
			}
		}
		if len(notUp) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not operational after %v: %s", timeout, strings.Join(notUp, ", "))
		}
		time.Sleep(pause)
	}
}

// macFor is the hardware address of the interface that holds address a:
// locally administered, 0a:58 then the address's last four bytes (as
// Kubernetes network plugins do). An address that moves to a new
// namespace (a recreated environment, a reused address) keeps its
// hardware address, so the neighbour caches of the router and of peers
// stay right and nobody waits for them to expire.
func macFor(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x0a, 0x58, b[12], b[13], b[14], b[15]}
}

// setAddrs makes want the link's only global addresses. Duplicate address
// detection is skipped: the pool is the control plane's to hand out, and
// DAD would keep an IPv6 address unusable for a second.
func setAddrs(nl *netlink.Handle, link netlink.Link, want []netip.Prefix) error {
	have, err := nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, a := range have {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		keep := false
		for _, w := range want {
			keep = keep || w == p
		}
		if !keep && !ip.IsLinkLocalUnicast() {
			if err := nl.AddrDel(link, &a); err != nil {
				return fmt.Errorf("remove address %s: %w", p, err)
			}
		}
	}
	for _, w := range want {
		addr := &netlink.Addr{IPNet: prefixNet(w), Flags: unix.IFA_F_NODAD}
		if err := nl.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("address %s: %w", w, err)
		}
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func linkUp(nl *netlink.Handle, name string) error {
	l, err := nl.LinkByName(name)
	if err != nil {
		return err
	}
	return nl.LinkSetUp(l)
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
