package netns_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// The names of the FQDN differential test, served by a DNS server in its
// internet: some for several addresses, IPv4 and IPv6, one through a
// CNAME, one for an environment's address (which an fqdn rule never
// opens).
var (
	diffResolver = netip.MustParseAddr("198.19.0.53")
	diffZone     = map[string][]string{
		"a.names.test": {"a.names.test. 300 IN A 198.19.0.10"},
		"b.names.test": {"b.names.test. 300 IN A 198.19.1.10", "b.names.test. 300 IN A 198.19.1.77", "b.names.test. 300 IN AAAA fd00:198:19::8:1"},
		"c.other.test": {"c.other.test. 300 IN A 198.19.2.5", "c.other.test. 300 IN AAAA fd00:198:19::10"},
		"d.names.test": {"d.names.test. 300 IN CNAME e.cdn.test.", "e.cdn.test. 300 IN A 198.19.200.9", "e.cdn.test. 300 IN AAAA fd00:198:19::ff:2"},
		"x.names.test": {"x.names.test. 300 IN A 198.18.0.11"},
	}
	diffNames = []string{"a.names.test", "*.names.test", "c.other.test", "*.other.test", "*.cdn.test", "b.names.test"}
)

// TestDifferential_FQDNRulesAgreeWithCheck is the differential test with
// fqdn peers: before each round's probes every environment resolves
// every name through its proxy (those it may not are refused), and every
// packet's fate must be what Check says, by address, and by name (Check
// by host name allows when the packets to all of its addresses pass).
func TestDifferential_FQDNRulesAgreeWithCheck(t *testing.T) {
	seed := netnstest.Seed(t, "seed", *seedFlag)
	l := newResolvingLab(t)
	dt := newDifferential(t, l, seed)
	gen := &netnstest.Generator{R: rand.New(rand.NewPCG(seed, 1)), CIDRs: diffCIDRs, Labels: diffLabels, Ports: probePort, Names: diffNames}

	const rounds = 4
	perRound := (*probesFlag + rounds - 1) / rounds
	rs := &netnstest.Rounds{Seed: seed}
	start := time.Now()
	byName := 0
	var viaName atomic.Int64 // checks an fqdn rule allowed
	oracle := func(envID string, req apiv1.CheckRequest) (bool, error) {
		res, err := l.d.Check(context.Background(), envID, req)
		if res.FQDN != "" {
			viaName.Add(1)
		}
		return res.Allowed, err
	}
	for round := range rounds {
		policies := make([]apiv1.Policy, 2+gen.R.IntN(7))
		for i := range policies {
			policies[i] = apiv1.Policy{ID: fmt.Sprintf("pol-%d-%d", round, i), ProjectID: "proj", PolicySpec: gen.PolicySpec(fmt.Sprintf("p%d", i))}
		}
		// And one that every round allows a name somewhere.
		port := probePort[gen.R.IntN(len(probePort))]
		policies = append(policies, apiv1.Policy{ID: fmt.Sprintf("pol-%d-names", round), ProjectID: "proj", PolicySpec: apiv1.PolicySpec{
			Name: "names", EnvironmentSelector: apiv1.Selector{MatchLabels: diffLabels[gen.R.IntN(len(diffLabels))]}, PolicyTypes: []string{apiv1.Egress},
			Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{FQDN: diffNames[gen.R.IntN(len(diffNames))]}}, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolTCP, Port: &port}, {Protocol: apiv1.ProtocolICMP}}}},
		}.Normalize()})
		dt.applyAll(policies, int64(round+1))
		for _, e := range dt.envs {
			for name := range diffZone {
				for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
					if _, err := query(t, l.d.Namespace(e.ID), "udp", gateway, name, qtype); err != nil {
						t.Fatalf("%s resolves %s: %v", e.ID, name, err)
					}
				}
			}
		}
		// Half the probes are any; half leave an environment for the
		// internet, where names lead.
		probes := gen.Probes(dt.ends, perRound/2)
		for len(probes) < perRound {
			if p := gen.Probes(dt.ends, 1)[0]; p.From.Env != "" && p.To.Env == "" {
				probes = append(probes, p)
			}
		}
		results := netnstest.Run(context.Background(), probes, oracle, 48, denyTimeout)
		rs.Check(t, strconv.Itoa(round), results, func(p netnstest.Probe) string { return dt.reproduce(policies, p) })
		byName += checkByName(t, l, dt.envs, results)
	}
	t.Logf("%d probes agreed with Check (%d through, %d dropped; %d egress checks allowed by an fqdn rule), %d checks by name with them, in %v",
		rs.Sent, rs.Through, rs.Sent-rs.Through, viaName.Load(), byName, time.Since(start).Round(time.Millisecond))
	rs.Enough(t, 2000)
	if viaName.Load() < 50 {
		t.Errorf("only %d checks were allowed by an fqdn rule: the test hardly exercised names", viaName.Load())
	}
}

// checkByName asks Check, for every environment, name and probed port,
// by host name, and requires its answer to agree with the packets sent
// to the name's addresses: allowed exactly when every one got through.
// It returns how many checks it compared.
func checkByName(t *testing.T, l *lab, envs []apiv1.Environment, results []netnstest.Result) int {
	t.Helper()
	type key struct {
		env, proto string
		addr       netip.Addr
		port       int
	}
	through := map[key]bool{}
	for _, r := range results {
		if r.Probe.From.Env != "" && r.Probe.To.Env == "" && r.Err == nil {
			through[key{r.Probe.From.Env, r.Probe.Protocol, r.Probe.To.Addr, r.Probe.Port}] = r.Got
		}
	}
	n := 0
	for _, e := range envs {
		for name := range diffZone {
			for _, proto := range []string{apiv1.ProtocolTCP, apiv1.ProtocolUDP} {
				for _, port := range probePort {
					res, err := l.d.Check(context.Background(), e.ID, apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: proto, Address: name, Port: port})
					if err != nil {
						t.Fatal(err)
					}
					all, seen := true, 0
					for _, a := range res.Addresses {
						got, ok := through[key{e.ID, proto, netip.MustParseAddr(a), port}]
						if ok {
							seen++
						}
						all = all && (!ok || got)
					}
					// Only names whose every address was probed compare.
					if seen == 0 || seen != len(res.Addresses) {
						continue
					}
					n++
					if res.Allowed != all {
						t.Errorf("%s check %s %s:%d by name: allowed %v (addresses %v, fqdn %q), packets to them all through %v", e.ID, proto, name, port, res.Allowed, res.Addresses, res.FQDN, all)
					}
				}
			}
		}
	}
	return n
}

// newResolvingLab is newLab with a DNS server in the internet, which the
// driver's proxy forwards to.
func newResolvingLab(t *testing.T) *lab {
	t.Helper()
	l := newLabWith(t, func(c *netns.Config) { c.DNSUpstreams = []string{diffResolver.String()} }, diffResolver)
	z := &zone{records: map[string][]dns.RR{}}
	for name, rrs := range diffZone {
		z.set(name, rrs...)
	}
	netnstest.ServeDNS(t, l.inet.Namespace, netip.AddrPortFrom(diffResolver, 53), z)
	return l
}
