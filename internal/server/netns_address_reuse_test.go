package server_test

import (
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// The reproduction, with real packets: project B's ingress rule
// pins a client's address (IPv4 and its IPv6 companion) as CIDRs; the
// client is deleted and isolationd restarts on the same SQLite file; a new
// environment of project A, free to send anywhere, gets another address
// and its SYNs never reach B's database, while it does reach a peer of
// its own (so the drop is B's rule, not a broken network).
func TestNetnsAPI_PinnedAddressAdmitsNobodyNewAfterDeleteAndRestart(t *testing.T) {
	clock := newFakeClock()
	cfg := labConfig(t, netns.DriverName)
	cfg.AddressPool, cfg.Clock = "198.18.0.0/29", clock // the gateway is .1: five addresses
	l := startLab(t, cfg)
	b := l.project
	db := l.mustCreateIn(b.ID, "db", nil)
	cl := l.mustCreateIn(b.ID, "client", nil)
	netnstest.Serve(t, db.Enforcement.Namespace, []int{5432})
	var pins []apiv1.Peer
	for _, e := range l.ends(cl) {
		pins = append(pins, apiv1.Peer{CIDR: netipHost(e)})
	}
	if len(pins) != 2 {
		t.Fatalf("client %s has addresses %v; the test wants an IPv4 address and its IPv6 companion", cl.ID, pins)
	}
	l.createPolicy(apiv1.PolicySpec{
		Name: "pinned-client", PolicyTypes: []string{apiv1.Ingress, apiv1.Egress}, EnvironmentSelector: selector(nil),
		Ingress: []apiv1.IngressRule{{From: pins, Ports: []apiv1.Port{tcpPort(5432)}}},
		Egress:  []apiv1.EgressRule{{Ports: []apiv1.Port{tcpPort(5432)}}},
	})
	db = l.mustEnforce([]apiv1.Environment{db, cl})[0]
	send := func(from, to []netnstest.Endpoint, timeout time.Duration) []bool {
		t.Helper()
		var out []bool
		for i := range from {
			ok, err := netnstest.Send(l.ctx, netnstest.Probe{From: from[i], To: to[i], Protocol: apiv1.ProtocolTCP, Port: 5432}, timeout)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ok)
		}
		return out
	}
	if got := send(l.ends(cl), l.ends(db), 2*time.Second); !got[0] || !got[1] {
		t.Fatalf("the pinned client does not reach the database (IPv4, IPv6: %v): the rule must work before the reuse is tested", got)
	}

	if err := l.c.Environments().Delete(l.ctx, cl.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitGone(t, l, cl.ID)
	l.shutdown()
	clock.Advance(time.Hour)
	l.start()

	a := l.newProject("project-a")
	_, err := l.c.Policies().Create(l.ctx, apiv1.PolicyCreate{ProjectID: a.ID, PolicySpec: apiv1.PolicySpec{
		Name: "send-anywhere", PolicyTypes: []string{apiv1.Ingress, apiv1.Egress}, EnvironmentSelector: selector(nil),
		Ingress: []apiv1.IngressRule{{Ports: []apiv1.Port{tcpPort(5432)}}},
		Egress:  []apiv1.EgressRule{{Ports: []apiv1.Port{tcpPort(5432)}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	newcomer := l.mustCreateIn(a.ID, "newcomer", nil)
	peer := l.mustCreateIn(a.ID, "peer", nil)
	got := l.mustEnforce([]apiv1.Environment{newcomer, peer, db})
	newcomer, peer = got[0], got[1]
	if newcomer.Enforcement.Address == cl.Enforcement.Address || peer.Enforcement.Address == cl.Enforcement.Address {
		t.Fatalf("project A's environments got %s and %s after the restart: the deleted client's %s is quarantined",
			newcomer.Enforcement.Address, peer.Enforcement.Address, cl.Enforcement.Address)
	}
	if h, ok := l.holders()[cl.Enforcement.Address]; ok {
		t.Fatalf("the pinned %s is held by %s within its quarantine", cl.Enforcement.Address, h)
	}
	netnstest.Serve(t, peer.Enforcement.Namespace, []int{5432})
	if got := send(l.ends(newcomer), l.ends(peer), 2*time.Second); !got[0] || !got[1] {
		t.Fatalf("the newcomer does not reach its own project's peer (IPv4, IPv6: %v): its network must work for the next probe to mean anything", got)
	}
	if got := send(l.ends(newcomer), l.ends(db), denyTimeout); got[0] || got[1] {
		t.Fatalf("the newcomer %s of project A reached project B's database through the rule pinning the deleted client's address (IPv4, IPv6: %v)",
			newcomer.Enforcement.Address, got)
	}
}

// netipHost is e's address as a host CIDR.
func netipHost(e netnstest.Endpoint) string {
	return e.Addr.String() + "/" + map[bool]string{true: "32", false: "128"}[e.Addr.Is4()]
}
