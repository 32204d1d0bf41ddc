package netns_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// Benchmarks for `make bench-enforce` (-benchtime 1x -count 3): each
// iteration measures a fixed amount of work and reports its figures with
// b.ReportMetric, so one iteration is already a meaningful sample.

// BenchmarkProvision_With200Present times Provision then Apply of a
// typical policy, one environment after another, with 200 environments
// already present: the driver's share of "POST to ready".
func BenchmarkProvision_With200Present(b *testing.B) {
	l := newLab(b)
	ctx := context.Background()
	pol := typicalPolicy()
	addr := func(i int) string { return fmt.Sprintf("198.18.%d.%d", 1+i/200, 10+i%200) }
	parallel(b, 200, func(i int) error { return provisionAndApply(ctx, l, fmt.Sprint("present-", i), addr(i), pol) })
	for b.Loop() {
		const n = 100
		var took, down []time.Duration
		for i := range n {
			id := fmt.Sprint("new-", i)
			start := time.Now()
			if err := provisionAndApply(ctx, l, id, addr(200+i), pol); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		reportPercentiles(b, took, "provision")
		for i := range n {
			start := time.Now()
			if err := l.d.Teardown(ctx, fmt.Sprint("new-", i)); err != nil {
				b.Fatal(err)
			}
			down = append(down, time.Since(start))
		}
		reportPercentiles(b, down, "teardown")
	}
}

func provisionAndApply(ctx context.Context, l *lab, id, addr string, p apiv1.EffectivePolicy) error {
	if _, err := l.d.Provision(ctx, id, addr); err != nil {
		return err
	}
	p.EnvironmentID = id
	return l.d.Apply(ctx, id, p)
}

// typicalPolicy is what a small team's environment carries: web from the
// internet, a database from peers, egress to a few services.
func typicalPolicy() apiv1.EffectivePolicy {
	return apiv1.EffectivePolicy{
		Ingress: []apiv1.EffectiveRule{
			rule("web", []apiv1.EffectivePeer{cidr("198.19.0.0/16", "198.19.1.0/24")}, tcp(80), tcp(443)),
			rule("db", []apiv1.EffectivePeer{envPeer("198.18.1.11", "198.18.1.12", "198.18.1.13")}, tcp(5432)),
		},
		Egress: []apiv1.EffectiveRule{
			rule("deps", []apiv1.EffectivePeer{cidr("198.19.0.0/24"), cidr("fd00:198:19::/64")}, tcp(443), udp(53)),
		},
	}
}

func reportPercentiles(b *testing.B, took []time.Duration, name string) {
	slices.Sort(took)
	at := func(q float64) float64 {
		return float64(took[min(len(took)-1, int(q*float64(len(took))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), name+"-p50-ms")
	b.ReportMetric(at(0.99), name+"-p99-ms")
}

// BenchmarkReapply_100Environments applies a changed policy to 100
// environments, as the control plane does when a policy selecting all of
// them changes, and reports the time until all are enforced.
func BenchmarkReapply_100Environments(b *testing.B) {
	l := newLab(b)
	ctx := context.Background()
	const n = 100
	addr := func(i int) string { return fmt.Sprintf("198.18.1.%d", 10+i) }
	parallel(b, n, func(i int) error { return provisionAndApply(ctx, l, fmt.Sprint("env-", i), addr(i), typicalPolicy()) })
	round := 0
	for b.Loop() {
		round++
		p := typicalPolicy()
		p.Generation = int64(round)
		p.Ingress = append(p.Ingress, rule("changed", []apiv1.EffectivePeer{cidr(fmt.Sprintf("198.19.%d.0/24", round%200))}, tcpRange(8000, 8000+round)))
		start := time.Now()
		parallel(b, n, func(i int) error {
			q := p
			q.EnvironmentID = fmt.Sprint("env-", i)
			return l.d.Apply(ctx, q.EnvironmentID, q)
		})
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "reapply-100-ms")
	}
}

// BenchmarkPolicies measures, for a growing number of policies on one
// environment, the nftables rules and set elements the kernel holds, the
// round trip of a UDP packet that only the last policy allows, and the
// cost of Check. Rules stay flat; elements grow; the packet does not
// slow down with them. The rules counted are the environment's own, in the
// router; the base chains every environment shares add 7.
func BenchmarkPolicies(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			l := newLab(b)
			ctx := context.Background()
			a, _ := l.env(b, "env-a", "198.18.0.10")
			p := manyPolicies(n)
			l.apply(b, "env-a", p)
			from := l.inetEnd("198.19.0.10")
			rules, elements := kernelCounts(b, l.d.RouterNamespace(), l.prefix, a.Namespace)
			conn := dialUDP(b, from, a, 5432)
			req := apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: "udp", Address: from.Addr.String(), Port: 5432}
			for b.Loop() {
				const trips = 2000
				var took []time.Duration
				buf := make([]byte, 64)
				for range trips {
					start := time.Now()
					if err := conn.SetDeadline(start.Add(time.Second)); err != nil {
						b.Fatal(err)
					}
					if _, err := conn.Write([]byte("ping")); err != nil {
						b.Fatal(err)
					}
					if _, err := conn.Read(buf); err != nil {
						b.Fatalf("the allowed flow stopped: %v", err)
					}
					took = append(took, time.Since(start))
				}
				slices.Sort(took)
				b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1000, "rtt-p50-µs")
				const checks = 2000
				start := time.Now()
				for range checks {
					if res, err := l.d.Check(ctx, "env-a", req); err != nil || !res.Allowed {
						b.Fatalf("Check = %+v, %v", res, err)
					}
				}
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/checks, "check-ns")
				b.ReportMetric(float64(rules), "nft-rules")
				b.ReportMetric(float64(elements), "set-elements")
			}
		})
	}
}

// manyPolicies is the effective policy of n policies, each allowing a
// different /24 of the internet on a different port; only the last one
// allows 198.19.0.10 on UDP 5432.
func manyPolicies(n int) apiv1.EffectivePolicy {
	var p apiv1.EffectivePolicy
	for i := range n - 1 {
		pid := fmt.Sprint("pol-", i)
		p.Ingress = append(p.Ingress,
			rule(pid, []apiv1.EffectivePeer{cidr(fmt.Sprintf("198.19.%d.0/24", 1+i%250), fmt.Sprintf("198.19.%d.128/25", 1+i%250))}, udp(10000+i), tcpRange(20000+i, 20010+i)),
			rule(pid, []apiv1.EffectivePeer{cidr(fmt.Sprintf("fd00:198:19:%x::/64", i))}, icmpAny()),
		)
		p.Egress = append(p.Egress, rule(pid, []apiv1.EffectivePeer{envPeer(fmt.Sprintf("198.18.%d.%d", 2+i/250, 1+i%250))}, tcp(30000+i)))
	}
	p.Ingress = append(p.Ingress, rule("last", []apiv1.EffectivePeer{cidr("198.19.0.0/24")}, udp(5432)))
	return p
}

func dialUDP(b *testing.B, from, to netnstest.Endpoint, port int) *net.UDPConn {
	var c *net.UDPConn
	err := netnstest.Do(from.Namespace, func() (err error) {
		c, err = net.DialUDP("udp", &net.UDPAddr{IP: from.Addr.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.Addr, uint16(port))))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// kernelCounts reads from the kernel how many rules the chains of the
// environment named env hold in the router's inet table, and how many
// elements its sets.
func kernelCounts(b *testing.B, router, table, env string) (rules, elements int) {
	h, err := netns.GetFromName(router)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	// The rules are counted from a raw dump: nftables' own parser does not
	// read the 8-bit conntrack direction the kernel reports.
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(h)})
	if err != nil {
		b.Fatal(err)
	}
	defer nl.Close()
	for _, chain := range []string{"from", "to", "ingress", "egress"} {
		attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: append([]byte(table), 0)},
			{Type: unix.NFTA_RULE_CHAIN, Data: append([]byte(env+"_"+chain), 0)},
		})
		if err != nil {
			b.Fatal(err)
		}
		msgs, err := nl.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
			Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
		})
		if err != nil {
			b.Fatal(err)
		}
		rules += len(msgs)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		b.Fatal(err)
	}
	sets, err := c.GetSets(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range sets {
		if strings.HasPrefix(s.Name, env+"_ingress_") || strings.HasPrefix(s.Name, env+"_egress_") {
			elems, err := c.GetSetElements(s)
			if err != nil {
				b.Fatal(err)
			}
			elements += len(elems)
		}
	}
	return rules, elements
}
