package netns

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

func sp(lo, hi string) span { return span{netip.MustParseAddr(lo), netip.MustParseAddr(hi)} }

func spanStrings(s []span) []string {
	var out []string
	for _, x := range s {
		out = append(out, spanText(x))
	}
	return out
}

func TestSubtract_CarvesExceptionsOutOfACIDR(t *testing.T) {
	cases := []struct {
		cidr   string
		except []string
		want   []string
	}{
		{"10.0.0.0/8", nil, []string{"10.0.0.0/8"}},
		{"10.0.0.0/8", []string{"10.0.0.0/9"}, []string{"10.128.0.0/9"}},
		{"10.0.0.0/8", []string{"10.1.0.0/16", "10.1.2.0/24"}, []string{"10.0.0.0/16", "10.2.0.0-10.255.255.255"}},
		{"10.0.0.0/24", []string{"10.0.0.0/25", "10.0.0.128/25"}, nil},
		{"0.0.0.0/0", []string{"255.255.255.255/32"}, []string{"0.0.0.0-255.255.255.254"}},
		{"::/0", []string{"::/1"}, []string{"8000::/1"}},
		{"10.0.0.0/8", []string{"2001:db8::/32"}, []string{"10.0.0.0/8"}}, // other family: no effect
	}
	for _, c := range cases {
		var holes []span
		for _, x := range c.except {
			holes = append(holes, prefixSpan(netip.MustParsePrefix(x)))
		}
		got := spanStrings(subtract(prefixSpan(netip.MustParsePrefix(c.cidr)), holes))
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s except %v (-want +got):\n%s", c.cidr, c.except, diff)
		}
	}
}

func TestMergeSpans_JoinsOverlappingAndTouching(t *testing.T) {
	got := spanStrings(mergeSpans([]span{
		sp("10.0.0.5", "10.0.0.9"), sp("10.0.0.0", "10.0.0.4"), sp("10.0.0.20", "10.0.0.30"),
		sp("10.0.0.25", "10.0.0.40"), sp("255.255.255.0", "255.255.255.255"), sp("255.255.255.255", "255.255.255.255"),
	}))
	want := []string{"10.0.0.0-10.0.0.9", "10.0.0.20-10.0.0.40", "255.255.255.0/24"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestDisjointBoxes_CoverExactlyTheUnion checks, on random boxes over a
// small space, that the output covers every point the input does and no
// other, and that no two output boxes overlap (the kernel would refuse them).
func TestDisjointBoxes_CoverExactlyTheUnion(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}) }
	for iter := range 300 {
		var in []box
		for range 1 + r.IntN(8) {
			a, b := r.IntN(32), r.IntN(32)
			p, q := r.IntN(20), r.IntN(20)
			in = append(in, box{
				addr:  span{addr(min(a, b)), addr(max(a, b))},
				proto: uint8(6 + 11*r.IntN(2)),
				ports: portSpan{uint16(min(p, q)), uint16(max(p, q))},
			})
		}
		out := disjointBoxes(in)
		covers := func(bs []box, a netip.Addr, proto uint8, port uint16) int {
			n := 0
			for _, b := range bs {
				if b.proto == proto && b.addr.lo.Compare(a) <= 0 && a.Compare(b.addr.hi) <= 0 && b.ports.lo <= port && port <= b.ports.hi {
					n++
				}
			}
			return n
		}
		for i := range 34 {
			for _, proto := range []uint8{6, 17} {
				for port := range uint16(22) {
					want := covers(in, addr(i), proto, port) > 0
					got := covers(out, addr(i), proto, port)
					if got > 1 || (got == 1) != want {
						t.Fatalf("seed %d iteration %d: point %s/%d/%d is in %d output boxes, want in=%v\ninput %v\noutput %v", seed, iter, addr(i), proto, port, got, want, in, out)
					}
				}
			}
		}
	}
}

func TestRender_PutsEveryAllowInASetNotARule(t *testing.T) {
	p := apiv1.EffectivePolicy{
		Ingress: []apiv1.EffectiveRule{
			{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "198.19.0.0/16", Except: []string{"198.19.1.0/24"}}}},
				Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(80)}, {Protocol: "tcp", Port: ptr(1000), EndPort: ptr(1005)}}},
			{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{EnvironmentSelector: &apiv1.Selector{}},
				Environments: []apiv1.PeerEnvironment{{ID: "b", Address: "198.18.0.11"}, {ID: "c"}}}}},
			{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "fd00::/8"}}}, Ports: []apiv1.Port{{Protocol: "icmp"}}},
		},
		Egress: []apiv1.EffectiveRule{{Ports: []apiv1.Port{{Protocol: "udp"}}}},
	}
	rs, err := render(p)
	if err != nil {
		t.Fatal(err)
	}
	text := rs.text("iso", "isoenv")
	for _, want := range []string{
		"table inet iso {",
		`iifname "isobr" ip saddr vmap @from_v4`,
		"ip daddr vmap @to_v4",
		"set isoenv_ingress_ports_v4 {",
		"chain isoenv_from {\n\t\tct direction original jump isoenv_egress\n\t\tct direction reply jump isoenv_ingress\n" +
			"\t\tmeta nfproto ipv4 ct direction original counter name isoenv_denied_out update @isoenv_denied_out_v4 { ct original ip daddr . ct protocol . ct original proto-dst counter }\n" +
			"\t\tmeta nfproto ipv6 ct direction original counter name isoenv_denied_out update @isoenv_denied_out_v6 { ct original ip6 daddr . ct protocol . ct original proto-dst counter }\n" +
			"\t\tct direction original meta l4proto tcp meta mark set 0x150de17 reject with tcp reset\n" +
			"\t\tct direction original meta mark set 0x150de17 reject with icmpx admin-prohibited\n\t\tdrop\n",
		"chain postrouting {\n\t\ttype filter hook postrouting priority filter; policy accept;\n\t\tmeta mark 0x150de17 accept\n",
		"chain isoenv_to {\n\t\tct direction original jump isoenv_ingress\n\t\tct direction reply jump isoenv_egress\n" +
			"\t\tmeta nfproto ipv4 ct direction original counter name isoenv_denied_in update @isoenv_denied_in_v4 { ct original ip saddr . ct protocol . ct original proto-dst counter }\n" +
			"\t\tmeta nfproto ipv6 ct direction original counter name isoenv_denied_in update @isoenv_denied_in_v6 { ct original ip6 saddr . ct protocol . ct original proto-dst counter }\n\t\tdrop\n",
		"ct original ip saddr . ct protocol . ct original proto-dst @isoenv_ingress_ports_v4 accept",
		"198.19.0.0/24 . tcp . 80",
		"198.19.0.0/24 . tcp . 1000-1005",
		"198.19.2.0-198.19.255.255 . tcp . 80",
		"elements = { 198.18.0.11 }",
		"fd00::/8 . ipv6-icmp . 0-65535",
		"0.0.0.0/0 . udp . 0-65535",
		"::/0 . udp . 0-65535",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered ruleset lacks %q:\n%s", want, text)
		}
	}
	n := 0
	for _, c := range chainLayout {
		n += len(c.rules("isoenv", layoutSets(nil, "isoenv")))
	}
	// 16, the 3 of the fqdn rules and the 4 that count denied flows for
	// flow logs.
	if n != 23 {
		t.Errorf("the environment's chains have %d rules, want 23 whatever the policy", n)
	}
	shared := 0
	for _, c := range baseChains("isobr") {
		shared += len(c.rules)
	}
	if shared != 8 {
		t.Errorf("the shared base chains have %d rules, want 8 whatever the number of environments", shared)
	}
}

// TestDiffElements_TouchesOnlyWhatChanges: re-applying a policy with one
// more rule adds that rule's elements and removes none, and the elements
// both versions share are never sent again.
func TestDiffElements_TouchesOnlyWhatChanges(t *testing.T) {
	base := apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{
		{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "10.0.0.0/16"}}}, Ports: []apiv1.Port{{Protocol: "tcp", Port: ptr(80)}}},
		{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "10.9.0.0/16"}}}},
	}}
	more := base
	more.Ingress = append(slices.Clone(base.Ingress), apiv1.EffectiveRule{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "10.1.0.0/16"}}}, Ports: []apiv1.Port{{Protocol: "udp", Port: ptr(53)}}})
	old, err := render(base)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := render(more)
	if err != nil {
		t.Fatal(err)
	}
	var gone, added int
	for _, s := range setLayout {
		g, a := diffIntervals(old.intervals(s), rs.intervals(s))
		gone, added = gone+len(g), added+len(a)
		if g2, a2 := diffIntervals(rs.intervals(s), rs.intervals(s)); len(g2)+len(a2) > 0 {
			t.Errorf("set %s: the same ruleset differs from itself by %d elements", s.name, len(g2)+len(a2))
		}
	}
	if gone != 0 || added != 1 {
		t.Errorf("one more rule: %d elements removed, %d added; want 0 and 1", gone, added)
	}
	// An interval split in two goes out whole: the kernel refuses a new
	// end inside an interval it keeps.
	split := apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "10.9.0.0/16", Except: []string{"10.9.1.0/24"}}}}}}}
	whole := apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{{Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: "10.9.0.0/16"}}}}}}
	a, err := render(whole)
	if err != nil {
		t.Fatal(err)
	}
	b, err := render(split)
	if err != nil {
		t.Fatal(err)
	}
	g, ad := diffIntervals(a.intervals(setLayout[0]), b.intervals(setLayout[0]))
	if len(g) != 2 || len(ad) != 4 {
		t.Errorf("splitting 10.9.0.0/16: %d elements removed, %d added; want the old interval's 2 out and the new ones' 4 in", len(g), len(ad))
	}
}

func TestRender_RefusesWhatItCannotRead(t *testing.T) {
	for _, peer := range []apiv1.EffectivePeer{
		{Peer: apiv1.Peer{CIDR: "10.0.0.0/33"}},
		{Peer: apiv1.Peer{CIDR: "10.0.0.0/8", Except: []string{"nonsense"}}},
		{Peer: apiv1.Peer{EnvironmentSelector: &apiv1.Selector{}}, Environments: []apiv1.PeerEnvironment{{ID: "x", Address: "not-an-ip"}}},
	} {
		_, err := render(apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{{PolicyID: "p1", Peers: []apiv1.EffectivePeer{peer}}}})
		if err == nil || !strings.Contains(err.Error(), "egress[0] (policy p1 rule 0)") {
			t.Errorf("render(%+v) = %v, want an error naming the rule", peer, err)
		}
	}
	_, err := render(apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{{Ports: []apiv1.Port{{Protocol: "gre"}}}}})
	if err == nil || !strings.Contains(err.Error(), `unknown protocol "gre"`) {
		t.Errorf("render(gre) = %v, want an error naming the protocol", err)
	}
	_, err = render(apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{{Ports: []apiv1.Port{{Protocol: "tcp", PortName: "http"}}}}})
	if err == nil || !strings.Contains(err.Error(), `port "http" is not resolved`) {
		t.Errorf("render(named port) = %v, want an error: a name left unresolved must not read as every port", err)
	}
}

// TestRender_AgreesWithTheEvaluator checks the rendered sets, read as a
// packet filter would read them, against policy.Evaluate on random
// policies and packets: the kernel tests prove the sets are what the
// kernel enforces, this proves they say what the API says.
func TestRender_AgreesWithTheEvaluator(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 1))
	addrs := []string{"10.0.0.1", "10.0.0.200", "10.0.1.5", "10.1.0.1", "192.168.1.1", "2001:db8::1", "2001:db8::1:1", "2001:db8:1::5", "fe80::1"}
	cidrs := [][]string{{"10.0.0.0/8", "10.0.1.0/24"}, {"10.0.0.0/16"}, {"10.0.0.0/24", "10.0.0.128/25"}, {"2001:db8::/32", "2001:db8::1:0/112"}, {"2001:db8::/48"}, {"0.0.0.0/0"}, {"::/0", "2001:db8:1::/48"}}
	ports := []apiv1.Port{{Protocol: "tcp", Port: ptr(80)}, {Protocol: "tcp", Port: ptr(1000), EndPort: ptr(1009)}, {Protocol: "udp"}, {Protocol: "udp", Port: ptr(53)}, {Protocol: "icmp"}, {Protocol: "tcp"}}
	for iter := range 200 {
		var p apiv1.EffectivePolicy
		for range r.IntN(4) {
			var ru apiv1.EffectiveRule
			for range r.IntN(3) {
				if r.IntN(3) == 0 {
					ru.Peers = append(ru.Peers, apiv1.EffectivePeer{Peer: apiv1.Peer{EnvironmentSelector: &apiv1.Selector{}},
						Environments: []apiv1.PeerEnvironment{{ID: "e", Address: addrs[r.IntN(len(addrs))]}}})
					continue
				}
				c := cidrs[r.IntN(len(cidrs))]
				ru.Peers = append(ru.Peers, apiv1.EffectivePeer{Peer: apiv1.Peer{CIDR: c[0], Except: c[1:]}})
			}
			for range r.IntN(3) {
				ru.Ports = append(ru.Ports, ports[r.IntN(len(ports))])
			}
			if r.IntN(2) == 0 {
				p.Ingress = append(p.Ingress, ru)
			} else {
				p.Egress = append(p.Egress, ru)
			}
		}
		rs, err := render(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{apiv1.Ingress, apiv1.Egress} {
			for _, a := range addrs {
				for _, proto := range []string{"tcp", "udp", "icmp"} {
					for _, port := range []int{53, 80, 999, 1000, 1009, 1010} {
						req := apiv1.CheckRequest{Direction: dir, Protocol: proto, Address: a, Port: port}
						want := policy.Evaluate(p, req).Allowed
						if got := rs.checkSets(req); got != want {
							t.Fatalf("seed %d iteration %d: %+v: sets say %v, evaluator %v\n%s", seed, iter, req, got, want, rs.text("t", "tenv"))
						}
					}
				}
			}
		}
	}
}

// checkSets asks the rendered sets about a check request.
func (rs *ruleset) checkSets(req apiv1.CheckRequest) bool {
	a := netip.MustParseAddr(req.Address)
	dir := map[string]int{apiv1.Ingress: dirIngress, apiv1.Egress: dirEgress}[req.Direction]
	proto := map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "icmp": [2]uint8{unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6}[family(a)]}[req.Protocol]
	return rs.allows(dir, a, proto, uint16(req.Port))
}

// allows reads the sets as the chains do: would a new flow in direction
// dir with the remote end at a, protocol proto and destination port port
// be accepted?
func (rs *ruleset) allows(dir int, a netip.Addr, proto uint8, port uint16) bool {
	d := rs.dirs[dir]
	f := family(a)
	in := func(s span) bool { return s.lo.Compare(a) <= 0 && a.Compare(s.hi) <= 0 }
	for _, s := range d.any[f] {
		if in(s) {
			return true
		}
	}
	for _, b := range d.l4[f] {
		if b.proto == proto && in(b.addr) && b.ports.lo <= port && port <= b.ports.hi {
			return true
		}
	}
	return false
}

func TestNames_FitInterfaceNamesAndRecogniseOnlyEnvironments(t *testing.T) {
	n, err := newNames("abcdef")
	if err != nil {
		t.Fatal(err)
	}
	name := n.env("0b7c3c2e-8a55-4f5e-a9d8-96b8f0a5f0c1")
	if len(name) > 15 || !n.isEnv(name) {
		t.Errorf("env name %q: len %d, isEnv %v", name, len(name), n.isEnv(name))
	}
	if got := NamespaceName("abcdef", "0b7c3c2e-8a55-4f5e-a9d8-96b8f0a5f0c1"); got != name {
		t.Errorf("NamespaceName = %q, the driver names it %q", got, name)
	}
	for _, other := range []string{n.router(), n.bridge(), n.prefix + "up", "abcdez" + name[6:], name[:14] + "0", "x" + name[1:], name + "a"} {
		if n.isEnv(other) {
			t.Errorf("isEnv(%q) = true", other)
		}
	}
	for _, bad := range []string{"", "Abc", "1abc", "abcdefg", "a-b", "a_b"} {
		if _, err := newNames(bad); err == nil {
			t.Errorf("newNames(%q) accepted", bad)
		}
	}
}

func TestRecord_RoundTripsThroughChunks(t *testing.T) {
	p := apiv1.EffectivePolicy{EnvironmentID: "e", Generation: 7}
	for i := range 300 {
		p.Ingress = append(p.Ingress, apiv1.EffectiveRule{PolicyID: fmt.Sprint("p", i), Peers: []apiv1.EffectivePeer{{Peer: apiv1.Peer{CIDR: fmt.Sprintf("10.%d.0.0/16", i%256)}}}})
	}
	chunks, err := encodeRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if len(c) > 250 {
			t.Fatalf("chunk of %d bytes would not fit a comment", len(c))
		}
	}
	if len(chunks) < 2 {
		t.Fatalf("a 300-rule policy fits in %d chunk(s); the test wants several", len(chunks))
	}
}

func ptr[T any](v T) *T { return &v }
