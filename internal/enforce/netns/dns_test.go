package netns_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// The DNS lab's internet, in 198.19.0.0/16: a resolver, another one
// environments must not reach, and hosts the names stand for.
var (
	upstreamDNS = netip.MustParseAddr("198.19.53.53")
	otherDNS    = netip.MustParseAddr("198.19.53.54")
	nameHostA   = netip.MustParseAddr("198.19.128.10")
	nameHostB   = netip.MustParseAddr("198.19.128.11")
	nameHostC   = netip.MustParseAddr("198.19.128.12")
	cidrHost    = netip.MustParseAddr("198.19.128.20")
	gateway     = netip.MustParseAddr("198.18.0.1")
)

// holdPort is where the internet's hosts keep TCP connections open,
// echoing what they receive.
const holdPort = 8443

// zone is the fake internet's DNS data: name to records, changed by
// tests while the server runs.
type zone struct {
	mu      sync.Mutex
	records map[string][]dns.RR
	silent  map[string]bool // names the server never answers
	synth   func(dns.Question) []dns.RR
}

// synthesize has the server answer from fn the names it has no records
// for.
func (z *zone) synthesize(fn func(dns.Question) []dns.RR) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.synth = fn
}

func (z *zone) set(name string, rrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err) // the tests' own records
		}
		out = append(out, rr)
	}
	z.records[dns.Fqdn(name)] = out
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	q := req.Question[0]
	if z.silent[q.Name] {
		return // the upstream times out
	}
	m := new(dns.Msg)
	m.SetReply(req)
	rrs, ok := z.records[q.Name]
	if !ok && z.synth != nil {
		rrs = z.synth(q)
		ok = rrs != nil
	}
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	m.Answer = rrs
	_ = w.WriteMsg(m)
}

// dnsLab is a driver whose uplink leads to a fake internet with a DNS
// server; its proxy forwards there, with a minimum TTL of 1 s.
type dnsLab struct {
	*wanLab
	zone     *zone
	failures chan netns.ResolverFailure
}

func newDNSLab(t testing.TB) *dnsLab {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	l := &dnsLab{wanLab: &wanLab{prefix: uniquePrefix(t), accepted: make(chan netip.Addr, 16)}, failures: make(chan netns.ResolverFailure, 64),
		zone: &zone{records: map[string][]dns.RR{}, silent: map[string]bool{"slow.example.test.": true}}}
	l.wan = "wan-" + l.prefix
	netnstest.NewNamespace(t, l.wan)
	if err := netnstest.AddLoopbackAddrs(l.wan, upstreamDNS, otherDNS, nameHostA, nameHostB, nameHostC, cidrHost); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{upstreamDNS, otherDNS} {
		netnstest.ServeDNS(t, l.wan, netip.AddrPortFrom(a, 53), l.zone)
	}
	netnstest.Serve(t, l.wan, []int{80, 443})
	holdConnections(t, l.wan, holdPort)
	d, err := netns.New(netns.Config{
		Prefix: l.prefix, Pool: pool, Pool6: pool6, Uplink: "netns:" + l.wan, UplinkNet: uplinkNet, Logger: quietLogger,
		DNSUpstreams: []string{upstreamDNS.String()}, DNSMinTTL: time.Second, DNSTimeout: 300 * time.Millisecond,
		OnResolverFailure: func(f netns.ResolverFailure) {
			select {
			case l.failures <- f:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	l.d = d
	t.Cleanup(func() { purge(t, l.d) })
	return l
}

// holdConnections accepts TCP connections on port in namespace ns and
// echoes what they send until they close.
func holdConnections(t testing.TB, ns string, port int) {
	t.Helper()
	var ln net.Listener
	if err := netnstest.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			})
		}
	})
}

// query asks server, from namespace ns, for name's records of type
// qtype, over network ("udp" or "tcp").
func query(t testing.TB, ns, network string, server netip.Addr, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	return netnstest.Query(ns, network, netip.AddrPortFrom(server, 53), name, qtype, 2*time.Second)
}

// resolve asks the environment's resolver for name's A records and
// fails the test unless it answers them.
func resolve(t testing.TB, ns, name string) []netip.Addr {
	t.Helper()
	m, err := query(t, ns, "udp", gateway, name, dns.TypeA)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	if m.Rcode != dns.RcodeSuccess {
		t.Fatalf("resolve %s: %s %s", name, dns.RcodeToString[m.Rcode], netnstest.EDE(m))
	}
	var out []netip.Addr
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, netip.MustParseAddr(a.A.String()))
		}
	}
	return out
}

// envWith provisions envID at address with egress rules, and returns
// its namespace.
func (l *dnsLab) envWith(t testing.TB, envID, address string, egress ...apiv1.EffectiveRule) string {
	t.Helper()
	ep, err := l.d.Provision(context.Background(), envID, address)
	if err != nil {
		t.Fatal(err)
	}
	applyTo(t, l.d, envID, apiv1.EffectivePolicy{Egress: egress})
	return ep.Namespace
}

// applyTo applies p to envID on d.
func applyTo(t testing.TB, d *netns.Driver, envID string, p apiv1.EffectivePolicy) {
	t.Helper()
	p.EnvironmentID = envID
	if err := d.Apply(context.Background(), envID, p); err != nil {
		t.Fatal(err)
	}
}

func fqdnPeer(name string) apiv1.EffectivePeer {
	return apiv1.EffectivePeer{Peer: apiv1.Peer{FQDN: name}}
}

// connect opens a TCP connection from ns to addr:port, or fails.
func connect(t testing.TB, ns string, to netip.AddrPort) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := netnstest.Do(ns, func() (err error) {
		c, err = (&net.Dialer{Timeout: 3 * fastBound}).Dial("tcp4", to.String())
		return err
	})
	return c, err
}

// echoes reports whether c still carries data both ways.
func echoes(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := c.Read(buf)
	return err
}

// untilRefused dials to until a new connection is refused, for at most
// limit; it returns how long that took.
func untilRefused(t testing.TB, ns string, to netip.AddrPort, limit time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	for i := 0; time.Since(start) < limit && i < 1000; i++ {
		c, err := connect(t, ns, to)
		if err != nil {
			return time.Since(start), err
		}
		c.Close()
		// Not a wait for an event: the TTL is time itself.
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), errors.New("still accepted")
}

// TestDNS_ANameIsReachableForItsTTLAndEstablishedFlowsOutliveIt: an
// environment whose only rule is a name resolves it through its proxy;
// the first connection to the answer's address passes at once, and
// only on the rule's port; once the TTL (1 s, the minimum) runs out new
// connections are refused while the established one carries on; Check
// says the same throughout.
func TestDNS_ANameIsReachableForItsTTLAndEstablishedFlowsOutliveIt(t *testing.T) {
	l := newDNSLab(t)
	ctx := context.Background()
	ep, err := l.d.Provision(ctx, "env-a", "198.18.0.10")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ep.Nameservers, []string{gateway.String(), "fd00:198:18::c612:1"}) {
		t.Errorf("nameservers %v, want the gateways", ep.Nameservers)
	}
	l.zone.set("api.example.test", "api.example.test. 1 IN A "+nameHostA.String())
	p := apiv1.EffectivePolicy{EnvironmentID: "env-a", Egress: []apiv1.EffectiveRule{
		rule("names", []apiv1.EffectivePeer{fqdnPeer("api.example.test")}, tcp(holdPort)),
	}}
	if err := l.d.Apply(ctx, "env-a", p); err != nil {
		t.Fatal(err)
	}
	ns := ep.Namespace
	to := netip.AddrPortFrom(nameHostA, holdPort)
	if _, err := connect(t, ns, to); err == nil {
		t.Fatal("connected before resolving the name")
	}
	res, err := l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: "api.example.test", Port: holdPort})
	if err != nil || res.Allowed || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "has not resolved api.example.test") {
		t.Errorf("check before resolving: %+v, %v; want denied with a warning", res, err)
	}

	if got := resolve(t, ns, "api.example.test"); !slices.Equal(got, []netip.Addr{nameHostA}) {
		t.Fatalf("resolved %v, want %v", got, nameHostA)
	}
	c, err := connect(t, ns, to)
	if err != nil {
		t.Fatalf("the first connection after resolving: %v", err)
	}
	defer c.Close()
	if err := echoes(c); err != nil {
		t.Fatalf("established: %v", err)
	}
	res, err = l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: "api.example.test", Port: holdPort})
	if err != nil || !res.Allowed || res.FQDN != "api.example.test" || !slices.Equal(res.Addresses, []string{nameHostA.String()}) || res.Matched == nil || res.Matched.PolicyID != "names" {
		t.Errorf("check by name after resolving: %+v, %v", res, err)
	}
	if _, err := connect(t, ns, netip.AddrPortFrom(nameHostA, 443)); err == nil {
		t.Error("reached the name's address on a port its rule does not allow")
	}
	if _, err := connect(t, ns, netip.AddrPortFrom(nameHostC, holdPort)); err == nil {
		t.Error("reached an address no answer gave")
	}
	if names := l.d.ResolvedNames(ctx, "env-a", "api.example.test"); len(names) != 1 || !slices.Equal(names[0].Addresses, []string{nameHostA.String()}) {
		t.Errorf("resolved names %+v", names)
	}

	took, err := untilRefused(t, ns, to, 5*time.Second)
	if err == nil {
		t.Fatalf("new connections still pass %v after a 1 s TTL", took)
	}
	t.Logf("new connections refused %v after the answer (TTL 1 s)", took)
	if err := echoes(c); err != nil {
		t.Errorf("the established connection stopped with the TTL: %v", err)
	}
	res, _ = l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: "tcp", Address: nameHostA.String(), Port: holdPort})
	if res.Allowed {
		t.Errorf("check after the TTL: %+v, want denied", res)
	}
}

// TestDNS_ANameThatChangesAddressIsFollowed: a new answer's address is
// allowed at once, and the old one's until its own TTL ends.
func TestDNS_ANameThatChangesAddressIsFollowed(t *testing.T) {
	l := newDNSLab(t)
	ctx := context.Background()
	ns := l.envWith(t, "env-a", "198.18.0.10", rule("names", []apiv1.EffectivePeer{fqdnPeer("*.example.test")}, tcp(443)))
	l.zone.set("moving.example.test", "moving.example.test. 60 IN A "+nameHostA.String())
	resolve(t, ns, "moving.example.test")
	l.zone.set("moving.example.test", "moving.example.test. 60 IN A "+nameHostB.String())
	if got := resolve(t, ns, "moving.example.test"); !slices.Equal(got, []netip.Addr{nameHostB}) {
		t.Fatalf("resolved %v", got)
	}
	for _, a := range []netip.Addr{nameHostA, nameHostB} {
		if _, err := dial(t, ns, "tcp4", netip.AddrPortFrom(a, 443)); err != nil {
			t.Errorf("connect to %s: %v", a, err)
		}
	}
	res, _ := l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Address: "moving.example.test", Port: 443})
	if !res.Allowed || !slices.Equal(res.Addresses, []string{nameHostA.String(), nameHostB.String()}) {
		t.Errorf("check by name: %+v", res)
	}
}

// TestDNS_NamesNoRuleAllowsAreRefusedUnlessTheEnvironmentReachesOutside:
// an environment allowed only names gets REFUSED, with the Extended DNS
// Error saying why, for any other name; one that may reach an address
// outside the pools by CIDR resolves every name (its addresses are still
// not allowed).
func TestDNS_NamesNoRuleAllowsAreRefusedUnlessTheEnvironmentReachesOutside(t *testing.T) {
	l := newDNSLab(t)
	l.zone.set("other.example.org", "other.example.org. 60 IN A "+nameHostC.String())
	names := rule("names", []apiv1.EffectivePeer{fqdnPeer("api.example.test")}, tcp(443))
	a := l.envWith(t, "env-a", "198.18.0.10", names)
	b := l.envWith(t, "env-b", "198.18.0.11", names, rule("cidr", []apiv1.EffectivePeer{cidr(cidrHost.String() + "/32")}, tcp(443)))
	for _, network := range []string{"udp", "tcp"} {
		m, err := query(t, a, network, gateway, "other.example.org", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if m.Rcode != dns.RcodeRefused || !strings.Contains(netnstest.EDE(m), "Blocked") || !strings.Contains(netnstest.EDE(m), "no egress rule of this environment allows the name other.example.org") {
			t.Errorf("%s: a name no rule allows: %s %q, want REFUSED with EDE 15 Blocked", network, dns.RcodeToString[m.Rcode], netnstest.EDE(m))
		}
	}
	if got := resolve(t, b, "other.example.org"); !slices.Equal(got, []netip.Addr{nameHostC}) {
		t.Errorf("an environment that reaches outside by CIDR resolved %v", got)
	}
	if _, err := dial(t, b, "tcp4", netip.AddrPortFrom(nameHostC, 443)); err == nil {
		t.Error("resolving a name no rule allows allowed its address")
	}
	if _, err := dial(t, b, "tcp4", netip.AddrPortFrom(cidrHost, 443)); err != nil {
		t.Errorf("the CIDR rule: %v", err)
	}
}

// TestDNS_OnlyTheProxyAnswersAndAFailingUpstreamGivesSERVFAIL: DNS to any
// other resolver (or to the upstream itself) is refused, other ports of
// the router are closed, and an upstream that times out gives SERVFAIL
// and is reported.
func TestDNS_OnlyTheProxyAnswersAndAFailingUpstreamGivesSERVFAIL(t *testing.T) {
	l := newDNSLab(t)
	ns := l.envWith(t, "env-a", "198.18.0.10", rule("names", []apiv1.EffectivePeer{fqdnPeer("*.example.test")}, tcp(443)))
	l.zone.set("api.example.test", "api.example.test. 60 IN A "+nameHostA.String())
	for _, server := range []netip.Addr{upstreamDNS, otherDNS} {
		for _, network := range []string{"udp", "tcp"} {
			if m, err := query(t, ns, network, server, "api.example.test", dns.TypeA); err == nil {
				t.Errorf("%s to %s answered %s: DNS to another resolver must be blocked", network, server, dns.RcodeToString[m.Rcode])
			}
		}
	}
	if _, err := dial(t, ns, "tcp4", netip.AddrPortFrom(gateway, 22)); err == nil {
		t.Error("reached the router on port 22")
	}
	m, err := query(t, ns, "udp", gateway, "slow.example.test", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if m.Rcode != dns.RcodeServerFailure || len(m.Answer) != 0 {
		t.Errorf("an upstream that times out: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	select {
	case f := <-l.failures:
		if f.Upstream != upstreamDNS.String()+":53" || f.EnvID != "env-a" || f.Name != "slow.example.test" {
			t.Errorf("failure %+v", f)
		}
	default:
		t.Error("the upstream's failure was not reported")
	}
	// TCP through the proxy too.
	if m, err := query(t, ns, "tcp", gateway, "api.example.test", dns.TypeA); err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("tcp through the proxy: %v, %v", m, err)
	}
}

// TestDNS_RemovingTheNameRuleStopsTheFlowsItLetIn: the invariant every
// rule keeps: a packet's fate is what Check says of its flow.
func TestDNS_RemovingTheNameRuleStopsTheFlowsItLetIn(t *testing.T) {
	l := newDNSLab(t)
	ctx := context.Background()
	ns := l.envWith(t, "env-a", "198.18.0.10", rule("names", []apiv1.EffectivePeer{fqdnPeer("api.example.test")}, tcp(holdPort)))
	l.zone.set("api.example.test", "api.example.test. 3600 IN A "+nameHostA.String())
	resolve(t, ns, "api.example.test")
	c, err := connect(t, ns, netip.AddrPortFrom(nameHostA, holdPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoes(c); err != nil {
		t.Fatal(err)
	}
	applyTo(t, l.d, "env-a", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("other", []apiv1.EffectivePeer{fqdnPeer("other.example.test")}, tcp(holdPort))}})
	if err := echoes(c); err == nil {
		t.Error("the established flow carried on after its rule was removed")
	}
	if res, _ := l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Address: nameHostA.String(), Port: holdPort}); res.Allowed {
		t.Errorf("check after the rule was removed: %+v", res)
	}
}
