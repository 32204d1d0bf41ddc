package netns_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// Each test here plays a workload that is root in its environment, with
// every capability it has there, against what its rules forbid.

// frameTimeout bounds the wait for a frame that must arrive.
const frameTimeout = 5 * time.Second

// TestGuard_AMACSpoofingEnvironmentNeitherReceivesNorDisturbsAnothersTraffic
// has an environment of project B send 100 frames with the hardware
// address of project A's environment V (as a learning bridge would take
// them: IP frames, and ARP claiming V's address or naming V's hardware
// address as its own), while another environment of A connects to V. V
// stays reachable during and after, B's interface never sees a frame for
// V, and the bridge still sends V's hardware address to V's port.
func TestGuard_AMACSpoofingEnvironmentNeitherReceivesNorDisturbsAnothersTraffic(t *testing.T) {
	l := newLab(t)
	v, _ := l.env(t, "a-victim", "198.18.0.10")
	s, _ := l.env(t, "a-sender", "198.18.0.11")
	m, _ := l.env(t, "b-spoofer", "198.18.0.12")
	open := apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("in", nil)}, Egress: []apiv1.EffectiveRule{rule("out", nil)}}
	l.apply(t, "a-victim", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("from-s", []apiv1.EffectivePeer{envPeer("198.18.0.11")}, tcp(80))}})
	l.apply(t, "a-sender", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("to-v", []apiv1.EffectivePeer{envPeer("198.18.0.10")}, tcp(80))}})
	// The spoofer may send and receive anything: only the router's
	// guard stands between it and V's traffic.
	l.apply(t, "b-spoofer", open)
	if !send(t, probe("tcp", s, v, 80)) {
		t.Fatal("s cannot reach v before any spoofing")
	}

	vMAC, mMAC := l.d.HardwareAddr(v.Addr), l.d.HardwareAddr(m.Addr)
	forV := func(f []byte) bool {
		if bytes.Equal(f[:6], vMAC) {
			return true
		}
		_, dst, _, ok := netnstest.SYNOf(f)
		return ok && dst == v.Addr
	}
	capture := netnstest.NewCapture(t, m.Namespace, "eth0")

	var frames [][]byte
	for i := range 100 {
		switch i % 4 {
		case 0: // an IP frame from V's hardware address, to everyone
			frames = append(frames, netnstest.Ethernet(netnstest.Broadcast, vMAC, unix.ETH_P_IP, netnstest.TCPSYN(m.Addr, l.d.Gateway(), 40000, 9, uint32(i))))
		case 1: // ARP as V, from V's hardware address
			frames = append(frames, netnstest.Ethernet(netnstest.Broadcast, vMAC, unix.ETH_P_ARP, netnstest.ARP(2, vMAC, v.Addr, netnstest.Broadcast, v.Addr)))
		case 2: // ARP from the spoofer's own hardware address, claiming V's address
			frames = append(frames, netnstest.Ethernet(netnstest.Broadcast, mMAC, unix.ETH_P_ARP, netnstest.ARP(2, mMAC, v.Addr, netnstest.Broadcast, v.Addr)))
		case 3: // ARP naming V's hardware address as the spoofer's own address's
			frames = append(frames, netnstest.Ethernet(netnstest.Broadcast, mMAC, unix.ETH_P_ARP, netnstest.ARP(1, vMAC, m.Addr, make(net.HardwareAddr, 6), l.d.Gateway())))
		}
	}
	// V is probed while the frames go out, and after.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var during, reached int
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := netnstest.Send(context.Background(), probe("tcp", s, v, 80), time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			during++
			if got {
				reached++
			}
		}
	})
	for i := 0; i < len(frames); i += 10 {
		if err := netnstest.SendFrames(m.Namespace, "eth0", frames[i:i+10]...); err != nil {
			t.Fatal(err)
		}
	}
	// Were a sender's neighbour cache poisoned after all, its packets for
	// V would go to the spoofer's hardware address: the port still
	// receives only what is addressed to it.
	var misdirected [][]byte
	for i := range 10 {
		misdirected = append(misdirected, netnstest.Ethernet(mMAC, l.d.HardwareAddr(s.Addr), unix.ETH_P_IP, netnstest.TCPSYN(s.Addr, v.Addr, 42000, 80, uint32(i))))
	}
	if err := netnstest.SendFrames(s.Namespace, "eth0", misdirected...); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if reached != during || during == 0 {
		t.Errorf("while spoofing, s reached v %d times out of %d", reached, during)
	}
	for i := range 5 {
		if !send(t, probe("tcp", s, v, 80)) {
			t.Errorf("after spoofing, probe %d from s did not reach v", i)
		}
	}
	if n := capture.Count(forV); n > 0 {
		t.Errorf("the spoofer received %d frames meant for v", n)
	}
	// The bridge still forwards V's hardware address to V's port only,
	// and the router still resolves the spoofer's address to its own.
	h, err := netns.GetFromName(l.d.RouterNamespace())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	for _, e := range []netnstest.Endpoint{v, s, m} {
		port, err := nl.LinkByName(e.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		if pi, err := nl.LinkGetProtinfo(port); err != nil || pi.Learning || pi.Flood {
			t.Errorf("port %s: learning %v, unicast flooding %v (%v); want both off", e.Namespace, pi.Learning, pi.Flood, err)
		}
	}
	fdb, err := nl.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdb {
		if !bytes.Equal(n.HardwareAddr, vMAC) {
			continue
		}
		if link, err := nl.LinkByIndex(n.LinkIndex); err != nil || link.Attrs().Name != v.Namespace {
			t.Errorf("the bridge sends v's hardware address to %v (%v), not to v's port %s", link, err, v.Namespace)
		}
	}
	neigh, err := nl.NeighList(0, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neigh {
		if ip, _ := netip.AddrFromSlice(n.IP); (ip == m.Addr || ip == v.Addr) && n.HardwareAddr != nil && !bytes.Equal(n.HardwareAddr, l.d.HardwareAddr(ip)) {
			t.Errorf("the router resolves %s to %s", ip, n.HardwareAddr)
		}
	}
}

// TestGuard_RawSocketSYNsFromAnEnvironmentWithoutEgressReachNobody sends
// TCP SYNs from an environment whose rules allow no egress, through a
// packet socket (to a peer's hardware address, to everyone, to the
// router for the internet) and a raw IP socket, and counts, with packet
// sockets on the receiving interfaces, what arrives: nothing, while the
// same frames from an environment allowed to send arrive.
func TestGuard_RawSocketSYNsFromAnEnvironmentWithoutEgressReachNobody(t *testing.T) {
	l := newLab(t)
	n, _ := l.env(t, "no-egress", "198.18.0.10")
	p, _ := l.env(t, "any-egress", "198.18.0.11")
	v, _ := l.env(t, "open", "198.18.0.12")
	l.apply(t, "no-egress", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("in", nil)}})
	l.apply(t, "any-egress", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("out", nil)}})
	l.apply(t, "open", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("in", nil)}})
	inet := netipAddr("198.19.0.10")
	atV := netnstest.NewCapture(t, v.Namespace, "eth0")
	atInet := netnstest.NewCapture(t, l.inet.Namespace, "eth0")

	const magic = 0x15015000
	syns := func(from netnstest.Endpoint) (frames, packets [][]byte) {
		mac, gw := l.d.HardwareAddr(from.Addr), l.d.HardwareAddr(l.d.Gateway())
		for i := range 10 {
			seq := uint32(magic + i)
			frames = append(frames,
				netnstest.Ethernet(l.d.HardwareAddr(v.Addr), mac, unix.ETH_P_IP, netnstest.TCPSYN(from.Addr, v.Addr, 41000, 80, seq)),
				netnstest.Ethernet(netnstest.Broadcast, mac, unix.ETH_P_IP, netnstest.TCPSYN(from.Addr, v.Addr, 41001, 80, seq)),
				netnstest.Ethernet(gw, mac, unix.ETH_P_IP, netnstest.TCPSYN(from.Addr, inet, 41002, 80, seq)))
			packets = append(packets, netnstest.TCPSYN(from.Addr, v.Addr, 41003, 80, seq), netnstest.TCPSYN(from.Addr, inet, 41004, 80, seq))
		}
		return frames, packets
	}
	from := func(a netip.Addr) func([]byte) bool {
		return func(f []byte) bool {
			src, _, seq, ok := netnstest.SYNOf(f)
			return ok && src == a && seq&^0xff == magic
		}
	}
	for _, e := range []netnstest.Endpoint{n, p} {
		frames, packets := syns(e)
		if err := netnstest.SendFrames(e.Namespace, "eth0", frames...); err != nil {
			t.Fatal(err)
		}
		if err := netnstest.SendRawIP(e.Namespace, packets...); err != nil {
			t.Fatal(err)
		}
	}
	// What the allowed sender sent after the other has arrived: anything
	// of the other's that got through would have too.
	if err := atV.WaitFor(30, from(p.Addr), frameTimeout); err != nil {
		t.Fatalf("the allowed sender's SYNs at v: %v", err)
	}
	if err := atInet.WaitFor(20, from(p.Addr), frameTimeout); err != nil {
		t.Fatalf("the allowed sender's SYNs at the internet: %v", err)
	}
	for where, c := range map[string]*netnstest.Capture{"v": atV, "the internet": atInet} {
		if got := c.Count(from(n.Addr)); got > 0 {
			t.Errorf("%d SYNs from the environment without egress reached %s", got, where)
		}
	}
}

// TestEnforcement_DeletingEveryObjectInTheEnvironmentChangesNothing has a
// root shell in an environment flush the whole nftables ruleset of its
// namespace (finding nothing of the driver's there) and add rules that
// accept everything: what its policy denies stays denied, what it allows
// stays allowed.
func TestEnforcement_DeletingEveryObjectInTheEnvironmentChangesNothing(t *testing.T) {
	l := newLab(t)
	e, _ := l.env(t, "env-e", "198.18.0.10")
	peer, _ := l.env(t, "env-peer", "198.18.0.11")
	l.apply(t, "env-e", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("web", []apiv1.EffectivePeer{cidr("198.19.0.0/16")}, tcp(80))}})
	l.apply(t, "env-peer", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("in", nil)}, Egress: []apiv1.EffectiveRule{rule("out", nil)}})
	in := l.inetEnd("198.19.0.10")
	cases := []struct {
		probe netnstest.Probe
		want  bool
	}{
		{probe("tcp", e, in, 80), true},
		{probe("tcp", e, in, 22), false},
		{probe("udp", e, in, 80), false},
		{probe("tcp", e, peer, 80), false},
		{probe("tcp", in, e, 80), false},
		{probe("tcp", peer, e, 80), false},
		{probe("icmp", peer, e, 0), false},
	}
	check := func(when string) {
		t.Helper()
		for _, c := range cases {
			if got := send(t, c.probe); got != c.want {
				t.Errorf("%s: %s got through %v, want %v", when, c.probe, got, c.want)
			}
		}
	}
	check("before")

	h, err := netns.GetFromName(e.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	if tables, err := c.ListTables(); err != nil || len(tables) > 0 {
		t.Errorf("the environment's namespace holds tables %v (%v): it should hold no enforcement object", tables, err)
	}
	acceptEverything(t, c)
	check("after the environment flushed its ruleset and accepted everything")
}

// acceptEverything does what a root shell in an environment can to its
// own firewall: flush its namespace's ruleset (c is open on it) and
// accept every packet in and out.
func acceptEverything(t *testing.T, c *nftables.Conn) {
	t.Helper()
	c.FlushRuleset()
	accept := nftables.ChainPolicyAccept
	own := c.AddTable(&nftables.Table{Name: "mine", Family: nftables.TableFamilyINet})
	for name, hook := range map[string]*nftables.ChainHook{"in": nftables.ChainHookInput, "out": nftables.ChainHookOutput} {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: own, Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: nftables.ChainPriorityFirst, Policy: &accept})
		c.AddRule(&nftables.Rule{Table: own, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("the environment's root cannot change its own ruleset: %v", err)
	}
}

// TestEnforcement_RootInAnEnvironmentCannotWidenItsNameAllowances: a root
// shell in an environment allowed one name (and nothing else) flushes
// its namespace's ruleset, points its routes and its DNS elsewhere, and
// sends queries from another environment's address (whose rules allow a
// name it is not allowed) to borrow that one's allowance. Its egress
// stays what its policy says: the allowed name and its port, nothing else.
func TestEnforcement_RootInAnEnvironmentCannotWidenItsNameAllowances(t *testing.T) {
	l := newDNSLab(t)
	ctx := context.Background()
	l.zone.set("api.example.test", "api.example.test. 300 IN A "+nameHostA.String())
	l.zone.set("secret.example.test", "secret.example.test. 300 IN A "+nameHostC.String())
	l.zone.set("spoof.example.test", "spoof.example.test. 300 IN A "+nameHostC.String())
	a := l.envWith(t, "env-a", "198.18.0.10", rule("api", []apiv1.EffectivePeer{fqdnPeer("api.example.test")}, tcp(443)))
	b := l.envWith(t, "env-b", "198.18.0.11", rule("secret", []apiv1.EffectivePeer{fqdnPeer("*.example.test")}, tcp(443)))
	check := func(when string) {
		t.Helper()
		resolve(t, a, "api.example.test")
		if _, err := dial(t, a, "tcp4", netip.AddrPortFrom(nameHostA, 443)); err != nil {
			t.Errorf("%s: the allowed name: %v", when, err)
		}
		for _, to := range []netip.AddrPort{netip.AddrPortFrom(nameHostA, 80), netip.AddrPortFrom(nameHostC, 443), netip.AddrPortFrom(cidrHost, 443)} {
			if _, err := dial(t, a, "tcp4", to); err == nil {
				t.Errorf("%s: reached %s", when, to)
			}
		}
		if m, err := query(t, a, "udp", gateway, "secret.example.test", dns.TypeA); err != nil || m.Rcode != dns.RcodeRefused {
			t.Errorf("%s: another environment's name: %v, %v; want REFUSED", when, m, err)
		}
		for _, server := range []netip.Addr{upstreamDNS, otherDNS} {
			if _, err := query(t, a, "udp", server, "secret.example.test", dns.TypeA); err == nil {
				t.Errorf("%s: DNS to %s answered", when, server)
			}
		}
	}
	check("before")

	h, err := netns.GetFromName(a)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	acceptEverything(t, c)
	// Routes straight onto the link for the resolvers and the hosts.
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	eth0, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.Addr{otherDNS, upstreamDNS, nameHostC} {
		if err := nl.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: &net.IPNet{IP: dst.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatal(err)
		}
	}
	// Queries for B's name from B's address, sent by A.
	var spoofed [][]byte
	for i := range 20 {
		m := new(dns.Msg)
		m.SetQuestion("spoof.example.test.", dns.TypeA)
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		spoofed = append(spoofed, netnstest.UDP(netipAddr("198.18.0.11"), gateway, uint16(30000+i), 53, wire))
	}
	if err := netnstest.SendRawIP(a, spoofed...); err != nil {
		t.Fatal(err)
	}
	// B's own query, after A's: had any spoofed one reached the proxy,
	// it would have been answered by now.
	resolve(t, b, "secret.example.test")
	if names := l.d.ResolvedNames(ctx, "env-b", "*.example.test"); len(names) != 1 || names[0].Name != "secret.example.test" {
		t.Errorf("B's names after A spoofed queries from B's address: %+v, want only its own", names)
	}
	check("after flushing, rerouting and spoofing")
	if res, _ := l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Address: "secret.example.test", Port: 443}); res.Allowed {
		t.Errorf("check of B's name for A: %+v", res)
	}
}
