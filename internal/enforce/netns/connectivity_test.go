package netns_test

import (
	"context"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// TestConnectivity_RealPacketsFollowThePolicy sends TCP connections, UDP
// datagrams and ICMP echoes, IPv4 and IPv6, between environments and the
// internet, and checks that each one's fate is the one its rules call
// for and the one Check reports.
func TestConnectivity_RealPacketsFollowThePolicy(t *testing.T) {
	l := newLab(t)
	a, a6 := l.env(t, "env-a", "198.18.0.10")
	b, b6 := l.env(t, "env-b", "198.18.0.11")
	c, _ := l.env(t, "env-c", "198.18.0.12")
	fresh, _ := l.env(t, "env-fresh", "198.18.0.13")
	in := l.inetEnd

	// a is the environment under test; b may send anything anywhere and c
	// accepts anything, so what happens between them is a's doing.
	l.apply(t, "env-a", apiv1.EffectivePolicy{
		Ingress: []apiv1.EffectiveRule{
			rule("web", []apiv1.EffectivePeer{cidr("198.19.0.0/16", "198.19.1.0/24")}, tcp(80), tcpRange(1000, 1005)),
			rule("db", []apiv1.EffectivePeer{envPeer("198.18.0.11")}, udp(5432)),
			rule("v6", []apiv1.EffectivePeer{cidr("fd00:198:19::/64", "fd00:198:19::8:0/112")}, tcp(443), icmpAny()),
			rule("ping", []apiv1.EffectivePeer{cidr("198.19.0.0/24")}, icmpAny()),
		},
		Egress: []apiv1.EffectiveRule{
			rule("out", []apiv1.EffectivePeer{cidr("198.19.0.0/16", "198.19.2.0/24")}, tcp(22), apiv1.Port{Protocol: apiv1.ProtocolUDP, Port: ptr(1000), EndPort: ptr(1009)}),
			rule("to-c", []apiv1.EffectivePeer{envPeer("198.18.0.12")}),
			rule("out6", []apiv1.EffectivePeer{cidr("fd00:198:19::/64")}, udp(8080)),
		},
	})
	l.apply(t, "env-b", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("any", nil)}})
	l.apply(t, "env-c", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("any", nil)}})

	cases := []struct {
		name  string
		probe netnstest.Probe
		want  bool
	}{
		{"ingress tcp port from cidr", probe("tcp", in("198.19.0.10"), a, 80), true},
		{"ingress tcp from cidr far end", probe("tcp", in("198.19.200.9"), a, 80), true},
		{"ingress tcp from except block", probe("tcp", in("198.19.1.10"), a, 80), false},
		{"ingress tcp other port", probe("tcp", in("198.19.0.10"), a, 22), false},
		{"ingress tcp range start", probe("tcp", in("198.19.0.10"), a, 1000), true},
		{"ingress tcp range end", probe("tcp", in("198.19.0.10"), a, 1005), true},
		{"ingress tcp past range", probe("tcp", in("198.19.0.10"), a, 1009), false},
		{"ingress udp on a tcp port", probe("udp", in("198.19.0.10"), a, 80), false},
		{"ingress udp from peer environment", probe("udp", b, a, 5432), true},
		{"ingress tcp from peer environment on its udp port", probe("tcp", b, a, 5432), false},
		{"ingress udp from peer environment other port", probe("udp", b, a, 80), false},
		{"ingress from environment not selected", probe("tcp", c, a, 80), false},
		{"ingress icmp from cidr", probe("icmp", in("198.19.0.200"), a, 0), true},
		{"ingress icmp outside cidr", probe("icmp", in("198.19.1.77"), a, 0), false},
		{"ingress v6 tcp", probe("tcp", in("fd00:198:19::10"), a6, 443), true},
		{"ingress v6 tcp from except block", probe("tcp", in("fd00:198:19::8:1"), a6, 443), false},
		{"ingress v6 tcp other port", probe("tcp", in("fd00:198:19::10"), a6, 80), false},
		{"ingress v6 icmp", probe("icmp", in("fd00:198:19::ff:2"), a6, 0), true},
		{"ingress v6 icmp from except block", probe("icmp", in("fd00:198:19::8:1"), a6, 0), false},
		{"ingress v6 from peer environment's v6 address", probe("udp", b6, a6, 5432), false},
		{"egress tcp to cidr", probe("tcp", a, in("198.19.0.10"), 22), true},
		{"egress tcp to except block", probe("tcp", a, in("198.19.2.5"), 22), false},
		{"egress tcp other port", probe("tcp", a, in("198.19.0.10"), 80), false},
		{"egress udp range start", probe("udp", a, in("198.19.1.10"), 1000), true},
		{"egress udp range end", probe("udp", a, in("198.19.1.10"), 1009), true},
		{"egress udp past range", probe("udp", a, in("198.19.1.10"), 1010), false},
		{"egress icmp not allowed", probe("icmp", a, in("198.19.0.10"), 0), false},
		{"egress any port to peer environment", probe("tcp", a, c, 8080), true},
		{"egress udp to peer environment", probe("udp", a, c, 5432), true},
		{"egress icmp to peer environment", probe("icmp", a, c, 0), true},
		{"egress to environment not selected", probe("tcp", a, b, 80), false},
		{"egress v6 udp", probe("udp", a6, in("fd00:198:19::10"), 8080), true},
		{"egress v6 tcp on udp port", probe("tcp", a6, in("fd00:198:19::10"), 8080), false},
		{"egress v6 icmp", probe("icmp", a6, in("fd00:198:19::10"), 0), false},
		{"fresh environment denies ingress", probe("tcp", in("198.19.0.10"), fresh, 80), false},
		{"fresh environment denies egress", probe("tcp", fresh, in("198.19.0.10"), 80), false},
		{"fresh environment denies icmp", probe("icmp", b, fresh, 0), false},
	}
	oracle := checkOracle(l)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if want, err := netnstest.Expect(tc.probe, oracle); err != nil || want != tc.want {
				t.Fatalf("%s: Check says %v (%v), the case says %v", tc.probe, want, err, tc.want)
			}
			if got := send(t, tc.probe); got != tc.want {
				t.Errorf("%s: got through %v, want %v", tc.probe, got, tc.want)
			}
		})
	}
}

// checkOracle answers from the driver's Check.
func checkOracle(l *lab) netnstest.Oracle {
	return func(envID string, req apiv1.CheckRequest) (bool, error) {
		res, err := l.d.Check(context.Background(), envID, req)
		return res.Allowed, err
	}
}

// TestApply_ChangesTakeEffectForNewConnections re-applies a policy and
// checks that packets follow each version in turn.
func TestApply_ChangesTakeEffectForNewConnections(t *testing.T) {
	l := newLab(t)
	a, _ := l.env(t, "env-a", "198.18.0.10")
	from := l.inetEnd("198.19.0.10")
	steps := []struct {
		policy apiv1.EffectivePolicy
		want   map[int]bool
	}{
		{apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("p1", nil, tcp(80))}}, map[int]bool{80: true, 443: false}},
		{apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("p1", nil, tcp(443))}}, map[int]bool{80: false, 443: true}},
		{apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("p1", []apiv1.EffectivePeer{cidr("198.19.0.0/16", "198.19.0.0/24")})}}, map[int]bool{80: false, 443: false}},
		{apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("p1", []apiv1.EffectivePeer{cidr("198.19.0.0/16")})}}, map[int]bool{80: true, 443: true}},
		{apiv1.EffectivePolicy{}, map[int]bool{80: false, 443: false}},
	}
	for i, s := range steps {
		s.policy.Generation = int64(i + 1)
		l.apply(t, "env-a", s.policy)
		for port, want := range s.want {
			if got := send(t, probe("tcp", from, a, port)); got != want {
				t.Errorf("step %d: port %d got through %v, want %v", i, port, got, want)
			}
		}
	}
}

// TestGuard_AnEnvironmentCannotSendFromAnotherEnvironmentsAddress plays a
// workload that takes a peer's address inside its own namespace (it has
// the privileges there) to reach what only that peer may reach.
func TestGuard_AnEnvironmentCannotSendFromAnotherEnvironmentsAddress(t *testing.T) {
	l := newLab(t)
	a, a6 := l.env(t, "env-a", "198.18.0.10")
	b, b6 := l.env(t, "env-b", "198.18.0.11")
	c, c6 := l.env(t, "env-c", "198.18.0.12")
	anyOut := apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("out", nil)}}
	l.apply(t, "env-a", anyOut)
	l.apply(t, "env-b", anyOut)
	l.apply(t, "env-c", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{
		// 198.18.0.99 is an environment placed elsewhere: nobody on this
		// link answers for it, so a spoofer would get the replies.
		rule("from-b", []apiv1.EffectivePeer{envPeer("198.18.0.11", "198.18.0.99"), cidr(b6.Addr.String() + "/128")}, tcp(80), udp(80)),
	}})
	for _, p := range []netnstest.Probe{probe("tcp", b, c, 80), probe("udp", b6, c6, 80)} {
		if !send(t, p) {
			t.Fatalf("%s: the real peer cannot reach c", p)
		}
	}
	if send(t, probe("tcp", a, c, 80)) {
		t.Fatal("a reaches c without spoofing")
	}

	// a takes b's addresses, and the absent peer's, as its own.
	err := netnstest.Do(a.Namespace, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for _, p := range []string{"198.18.0.11/32", "198.18.0.99/32", b6.Addr.String() + "/128"} {
			if err := netlink.AddrAdd(eth0, &netlink.Addr{IPNet: mustNet(p), Flags: unix.IFA_F_NODAD}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	spoofed, absent, spoofed6 := a, a, a6
	spoofed.Addr, absent.Addr, spoofed6.Addr = b.Addr, netipAddr("198.18.0.99"), b6.Addr
	for _, p := range []netnstest.Probe{
		probe("tcp", spoofed, c, 80), probe("udp", spoofed, c, 80),
		probe("tcp", absent, c, 80), probe("udp", absent, c, 80),
		probe("udp", spoofed6, c6, 80), probe("tcp", spoofed6, c6, 80),
	} {
		if send(t, p) {
			t.Errorf("%s from a's namespace got through: a passed for another environment", p)
		}
	}
	if !send(t, probe("tcp", a, l.inetEnd("198.19.0.10"), 80)) {
		t.Error("a cannot send from its own address any more")
	}
}

func mustNet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}
