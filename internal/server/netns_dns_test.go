package server_test

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/store"
)

// upstream is the fake internet's resolver in the API tests.
var upstream = netip.MustParseAddr("198.19.0.53")

// fakeResolver answers api.example.test with 198.19.0.10 and never
// answers slow.example.test.
func fakeResolver(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	switch req.Question[0].Name {
	case "slow.example.test.":
		return
	case "api.example.test.":
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "api.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP("198.19.0.10")}}
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// lookup asks the environment's resolver (its namespace's gateway) for
// name's A records.
func lookup(t *testing.T, namespace, name string) *dns.Msg {
	t.Helper()
	var c net.Conn
	if err := netnstest.Do(namespace, func() (err error) {
		c, err = net.Dial("udp", "198.18.0.1:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	co := &dns.Conn{Conn: c}
	defer co.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	_ = co.SetDeadline(time.Now().Add(10 * time.Second))
	if err := co.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	resp, err := co.ReadMsg()
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	return resp
}

// TestNetnsAPI_NamesAllowedByPolicyResolveAndShowInTheEffectivePolicy:
// through the API, a policy allowing a name; the environment resolves it
// through its proxy and connects; the effective policy lists the name
// with its address, check answers by host name; an upstream that times
// out gives the environment SERVFAIL and the audit trail one event,
// however many queries it failed, and the counter counts them all.
func TestNetnsAPI_NamesAllowedByPolicyResolveAndShowInTheEffectivePolicy(t *testing.T) {
	cfg := labConfig(t, netns.DriverName)
	cfg.DNSUpstreams = []string{upstream.String()}
	l := startLab(t, cfg)
	inet := netnstest.NewInternet(t, netnstest.InternetConfig{
		Namespace: cfg.NetnsPrefix + "-internet", Router: l.driver().RouterNamespace(), Uplink: cfg.NetnsPrefix + "up",
		Nets: inetNets, Hosts: append(slices.Clone(inetHosts), upstream),
	})
	netnstest.Serve(t, inet.Namespace, probePorts)
	netnstest.ServeDNS(t, inet.Namespace, netip.AddrPortFrom(upstream, 53), dns.HandlerFunc(fakeResolver))

	env := l.createEnv("api", map[string]string{"app": "api"})
	l.createPolicy(apiv1.PolicySpec{
		Name: "registry", EnvironmentSelector: selector(map[string]string{"app": "api"}), PolicyTypes: []string{apiv1.Egress},
		Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{FQDN: "*.example.test"}}, Ports: []apiv1.Port{tcpPort(443)}}},
	})
	env = l.mustEnforce([]apiv1.Environment{env})[0]
	ns := env.Enforcement.Namespace

	res, err := l.c.Environments().Check(l.ctx, env.ID, apiv1.CheckRequest{Direction: apiv1.Egress, Address: "api.example.test", Port: 443})
	if err != nil || res.Allowed || len(res.Warnings) == 0 {
		t.Errorf("check by name before resolving: %+v, %v; want denied with a warning", res, err)
	}
	if m := lookup(t, ns, "api.example.test"); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("resolve: %v", m)
	}
	through, err := netnstest.Send(l.ctx, netnstest.Probe{From: netnstest.Endpoint{Env: env.ID, Namespace: ns, Addr: netip.MustParseAddr(env.Enforcement.Address)},
		To: netnstest.Endpoint{Namespace: inet.Namespace, Addr: netip.MustParseAddr("198.19.0.10")}, Protocol: apiv1.ProtocolTCP, Port: 443}, time.Second)
	if err != nil || !through {
		t.Errorf("the resolved name's address is not reachable on its port: %v, %v", through, err)
	}
	res, err = l.c.Environments().Check(l.ctx, env.ID, apiv1.CheckRequest{Direction: apiv1.Egress, Address: "api.example.test", Port: 443})
	if err != nil || !res.Allowed || res.FQDN != "api.example.test" || !slices.Equal(res.Addresses, []string{"198.19.0.10"}) || res.Matched == nil {
		t.Errorf("check by name: %+v, %v", res, err)
	}
	eff, err := l.c.Environments().EffectivePolicy(l.ctx, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(eff.Egress) != 1 || len(eff.Egress[0].Peers) != 1 {
		t.Fatalf("effective policy %s", js(eff))
	}
	names := eff.Egress[0].Peers[0].Names
	if len(names) != 1 || names[0].Name != "api.example.test" || !slices.Equal(names[0].Addresses, []string{"198.19.0.10"}) || time.Until(names[0].Expires) < 20*time.Second {
		t.Errorf("effective policy names %s", js(names))
	}

	for range 3 {
		if m := lookup(t, ns, "slow.example.test"); m.Rcode != dns.RcodeServerFailure {
			t.Errorf("an upstream that times out: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
		}
	}
	evs, _, err := l.srv.Store().ListAudit(l.ctx, store.AuditQuery{ResourceType: "dns_upstream", Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != "dns.upstream_failure" || evs[0].Resource.ID != upstream.String()+":53" || !strings.Contains(evs[0].Reason, "slow.example.test") {
		t.Errorf("audit events of the upstream %s, want one dns.upstream_failure", js(evs))
	}
	if want := `isolationd_dns_upstream_failures_total{upstream="198.19.0.53:53"} 3`; !strings.Contains(l.metrics(t), want) {
		t.Errorf("metrics lack %q", want)
	}
}
