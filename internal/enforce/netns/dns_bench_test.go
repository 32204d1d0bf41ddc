package netns_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// benchNet is where the benchmark's names point: a /19 on the internet's
// loopback, every address of it local there, so that each
// resolve-then-connect probe goes to an address no answer gave before
// (or whose allowance expired).
var benchNet = netip.MustParsePrefix("198.19.160.0/19")

// benchAnswer answers p<N>.bench.test with the Nth host address of
// benchNet (modulo their number), with a TTL of 1 s.
func benchAnswer(q dns.Question) []dns.RR {
	head, ok := strings.CutSuffix(q.Name, ".bench.test.")
	n, err := strconv.Atoi(strings.TrimPrefix(head, "p"))
	if !ok || err != nil {
		return nil
	}
	a := benchNet.Addr().As4()
	off := 1 + n%(1<<(32-benchNet.Bits())-2) // neither the network's address nor its broadcast
	a[2] += byte(off >> 8)
	a[3] += byte(off)
	return []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: a[:]}}
}

// BenchmarkDNS_ProxyBesideADirectQuery resolves a name through an
// environment's proxy and, beside it in the same run, directly from the
// router namespace to the same upstream (the proxy's own path without
// the proxy): p50 of each and what the proxy adds, for a name whose
// addresses are allowed already and for new names, whose addresses the
// kernel must be made to allow before the answer goes out. Then 10,000
// resolve-then-connect probes, each to an address just allowed: none may
// be refused.
func BenchmarkDNS_ProxyBesideADirectQuery(b *testing.B) {
	l := newDNSLab(b)
	ctx := context.Background()
	l.zone.synthesize(benchAnswer)
	if err := netnstest.Do(l.wan, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: benchNet.Addr().AsSlice(), Mask: net.CIDRMask(benchNet.Bits(), 32)}})
	}); err != nil {
		b.Fatal(err)
	}
	ep, err := l.d.Provision(ctx, "env-a", "198.18.0.10")
	if err != nil {
		b.Fatal(err)
	}
	applyTo(b, l.d, "env-a", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{
		rule("names", []apiv1.EffectivePeer{fqdnPeer("*.bench.test"), fqdnPeer("api.example.test")}, tcp(holdPort)),
	}})
	l.zone.set("api.example.test", "api.example.test. 3600 IN A "+nameHostA.String())
	viaProxy := udpResolver(b, ep.Namespace, gateway)
	direct := udpResolver(b, l.d.RouterNamespace(), upstreamDNS)
	for b.Loop() {
		const queries = 2000
		var proxied, straight, fresh []time.Duration
		for i := range queries {
			// Interleaved, so that both see the same machine.
			proxied = append(proxied, viaProxy.time(b, "api.example.test"))
			straight = append(straight, direct.time(b, "api.example.test"))
			fresh = append(fresh, viaProxy.time(b, fmt.Sprintf("p%d.bench.test", 100000+i)))
		}
		p50 := func(d []time.Duration) float64 {
			slices.Sort(d)
			return float64(d[len(d)/2].Nanoseconds()) / 1000
		}
		pp, sp, fp := p50(proxied), p50(straight), p50(fresh)
		b.ReportMetric(pp, "proxy-p50-µs")
		b.ReportMetric(sp, "direct-p50-µs")
		b.ReportMetric(pp-sp, "added-p50-µs")
		b.ReportMetric(pp/sp, "proxy/direct")
		b.ReportMetric(fp, "proxy-new-name-p50-µs")
		b.ReportMetric(fp-sp, "added-new-name-p50-µs")

		drops, probes := resolveThenConnect(b, ep.Namespace, 10000)
		b.ReportMetric(float64(drops), "drops")
		b.ReportMetric(float64(probes), "probes")
		if drops > 0 {
			b.Errorf("%d of %d first connections to a just-resolved address failed", drops, probes)
		}
	}
}

// resolver is a UDP socket made in a namespace, connected to a server.
type resolver struct {
	co *dns.Conn
	id uint16
}

func udpResolver(b *testing.B, ns string, server netip.Addr) *resolver {
	b.Helper()
	var c net.Conn
	if err := netnstest.Do(ns, func() (err error) {
		c, err = net.Dial("udp", netip.AddrPortFrom(server, 53).String())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return &resolver{co: &dns.Conn{Conn: c}}
}

// time asks for name's A records and returns how long the answer took.
func (r *resolver) time(b *testing.B, name string) time.Duration {
	b.Helper()
	r.id++
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.Id = r.id
	start := time.Now()
	_ = r.co.SetDeadline(start.Add(2 * time.Second))
	if err := r.co.WriteMsg(m); err != nil {
		b.Fatal(err)
	}
	for {
		resp, err := r.co.ReadMsg()
		if err != nil {
			b.Fatalf("resolve %s: %v", name, err)
		}
		if resp.Id != m.Id {
			continue // a late answer to an earlier query
		}
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			b.Fatalf("resolve %s: %s %s", name, dns.RcodeToString[resp.Rcode], netnstest.EDE(resp))
		}
		return time.Since(start)
	}
}

// resolveThenConnect resolves n new names from namespace ns and connects
// at once to each answer's address; it returns how many connections
// failed.
func resolveThenConnect(b *testing.B, ns string, n int) (drops, probes int) {
	b.Helper()
	r := udpResolver(b, ns, gateway)
	var errs []string
	err := netnstest.Do(ns, func() error {
		d := net.Dialer{Timeout: time.Second}
		for i := range n {
			r.id++
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("p%d.bench.test.", i), dns.TypeA)
			m.Id = r.id
			_ = r.co.SetDeadline(time.Now().Add(2 * time.Second))
			if err := r.co.WriteMsg(m); err != nil {
				return err
			}
			resp, err := r.co.ReadMsg()
			if err != nil || len(resp.Answer) != 1 {
				return fmt.Errorf("resolve probe %d: %v %v", i, resp, err)
			}
			probes++
			a := resp.Answer[0].(*dns.A).A
			c, err := d.Dial("tcp4", net.JoinHostPort(a.String(), strconv.Itoa(holdPort)))
			if err != nil {
				drops++
				if len(errs) < 5 {
					errs = append(errs, err.Error())
				}
				continue
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if len(errs) > 0 {
		b.Logf("first failures: %s", strings.Join(errs, "; "))
	}
	return drops, probes
}
