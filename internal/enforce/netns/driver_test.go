package netns_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	isonetns "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// isNamespace reports whether /run/netns/name is a mounted network
// namespace: what `ip netns list` lists.
func isNamespace(name string) bool {
	var st unix.Statfs_t
	return unix.Statfs(filepath.Join("/run/netns", name), &st) == nil && st.Type == unix.NSFS_MAGIC
}

// linkNames lists the interfaces of the named namespace ("" for this
// process's own).
func linkNames(t testing.TB, namespace string) []string {
	t.Helper()
	h := netlink.Handle{}
	nh := &h
	if namespace != "" {
		ns, err := netns.GetFromName(namespace)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		if nh, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
			t.Fatal(err)
		}
		defer nh.Close()
	}
	links, err := nh.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out
}

func TestProvision_CreatesANamespaceThatIPNetnsLists(t *testing.T) {
	l := newLab(t)
	ep, err := l.d.Provision(context.Background(), "env-a", "198.18.0.10")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Namespace != l.d.Namespace("env-a") || !strings.HasPrefix(ep.Namespace, l.prefix) || ep.Address != "198.18.0.10" {
		t.Errorf("endpoint %+v, want namespace %s and address 198.18.0.10", ep, l.d.Namespace("env-a"))
	}
	if !isNamespace(ep.Namespace) {
		t.Fatalf("/run/netns/%s is not a mounted namespace", ep.Namespace)
	}
	if _, err := exec.LookPath("ip"); err == nil {
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), ep.Namespace) {
			t.Errorf("ip netns list (%v):\n%s\nlacks %s", err, out, ep.Namespace)
		}
	}
	if links := linkNames(t, l.d.RouterNamespace()); !contains(links, ep.Namespace) || !contains(links, l.d.BridgeName()) {
		t.Errorf("router namespace links %v, want the bridge and the environment's veth %s", links, ep.Namespace)
	}
	for _, name := range linkNames(t, "") {
		if strings.HasPrefix(name, l.prefix) {
			t.Errorf("the host's own namespace has link %s: the driver must not touch it", name)
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func TestProvision_IsIdempotentAndKeepsTheRules(t *testing.T) {
	l := newLab(t)
	a, _ := l.env(t, "env-a", "198.18.0.10")
	l.apply(t, "env-a", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("p", nil, tcp(80))}})
	ep, err := l.d.Provision(context.Background(), "env-a", "198.18.0.10")
	if err != nil || ep.Namespace != a.Namespace {
		t.Fatalf("second Provision = %+v, %v", ep, err)
	}
	if !send(t, probe("tcp", l.inetEnd("198.19.0.10"), a, 80)) {
		t.Error("a second Provision lost the applied rules")
	}
}

func TestProvision_RefusesAddressesTheDriverCannotUse(t *testing.T) {
	l := newLab(t)
	for addr, want := range map[string]string{
		"10.0.0.5":        "outside the address pool 198.18.0.0/16",
		"198.18.0.1":      "reserved",
		"198.18.0.0":      "reserved",
		"198.18.255.255":  "reserved",
		"not-an-address":  `address "not-an-address"`,
		"fd00:198:18::10": "outside the address pool",
	} {
		if _, err := l.d.Provision(context.Background(), "env-x", addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Provision(%s) = %v, want an error containing %q", addr, err, want)
		}
	}
	if isNamespace(l.d.Namespace("env-x")) {
		t.Error("a refused Provision left a namespace")
	}
}

func TestTeardown_RemovesTheNamespaceAndVeth(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	ep, err := l.d.Provision(ctx, "env-a", "198.18.0.10")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.d.Teardown(ctx, "env-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", ep.Namespace)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace file still there: %v", err)
	}
	if contains(linkNames(t, l.d.RouterNamespace()), ep.Namespace) {
		t.Error("veth still in the router namespace")
	}
	if _, err := l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: "ingress", Protocol: "tcp", Address: "198.19.0.1", Port: 80}); !errors.Is(err, enforce.ErrUnknownEnvironment) {
		t.Errorf("Check after Teardown = %v, want ErrUnknownEnvironment", err)
	}
	if err := l.d.Apply(ctx, "env-a", apiv1.EffectivePolicy{}); !errors.Is(err, enforce.ErrUnknownEnvironment) {
		t.Errorf("Apply after Teardown = %v, want ErrUnknownEnvironment", err)
	}
	if err := l.d.Teardown(ctx, "env-a"); err != nil {
		t.Errorf("second Teardown = %v, want nil", err)
	}
	if err := l.d.Teardown(ctx, "never-seen"); err != nil {
		t.Errorf("Teardown of an unknown environment = %v, want nil", err)
	}
}

func TestApply_FailureKeepsThePreviousRules(t *testing.T) {
	l := newLab(t)
	a, _ := l.env(t, "env-a", "198.18.0.10")
	l.apply(t, "env-a", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("p", nil, tcp(80))}})
	bad := apiv1.EffectivePolicy{EnvironmentID: "env-a", Ingress: []apiv1.EffectiveRule{rule("p", []apiv1.EffectivePeer{cidr("198.19.0.0/40")})}}
	if err := l.d.Apply(context.Background(), "env-a", bad); err == nil {
		t.Fatal("Apply of an unreadable cidr succeeded")
	}
	if err := l.d.Apply(context.Background(), "env-a", apiv1.EffectivePolicy{EnvironmentID: "env-b"}); err == nil {
		t.Fatal("Apply of another environment's policy succeeded")
	}
	from := l.inetEnd("198.19.0.10")
	for port, want := range map[int]bool{80: true, 443: false} {
		res, err := l.d.Check(context.Background(), "env-a", apiv1.CheckRequest{Direction: "ingress", Protocol: "tcp", Address: from.Addr.String(), Port: port})
		if err != nil || res.Allowed != want {
			t.Errorf("Check port %d = %+v, %v; want allowed %v", port, res, err, want)
		}
		if got := send(t, probe("tcp", from, a, port)); got != want {
			t.Errorf("port %d got through %v, want %v", port, got, want)
		}
	}
}

// TestApply_NoGapWhileRulesAreReplaced replaces the rules a hundred times
// while packets flow: an allowed port must never be refused (half the
// rules) and a denied one never let through (no rules).
func TestApply_NoGapWhileRulesAreReplaced(t *testing.T) {
	l := newLab(t)
	a, _ := l.env(t, "env-a", "198.18.0.10")
	from := l.inetEnd("198.19.0.10")
	policies := [2]apiv1.EffectivePolicy{
		{Ingress: []apiv1.EffectiveRule{rule("p", nil, tcp(80), udp(1000)), rule("q", []apiv1.EffectivePeer{cidr("198.19.1.0/24")})}},
		{Ingress: []apiv1.EffectiveRule{rule("q", []apiv1.EffectivePeer{cidr("198.19.2.0/24")}), rule("p", nil, udp(1001), tcp(80))}},
	}
	l.apply(t, "env-a", policies[0])
	done := make(chan struct{})
	var applies atomic.Int64
	go func() {
		defer close(done)
		for i := range 100 {
			p := policies[i%2]
			p.Generation = int64(i)
			l.apply(t, "env-a", p)
			applies.Add(1)
		}
	}()
	var wg sync.WaitGroup
	var allowed, denied atomic.Int64
	for worker := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				port, want := 80, true
				if worker%2 == 1 {
					port, want = 22, false
				}
				// A dropped SYN is sent again only after a second: an
				// allowed probe that has not connected within 900 ms was
				// dropped, not slow. A denied one is caught as soon as it
				// gets through, so it can give up sooner.
				timeout := 100 * time.Millisecond
				if want {
					timeout = 900 * time.Millisecond
				}
				got, err := netnstest.Send(context.Background(), probe("tcp", from, a, port), timeout)
				if err != nil || got != want {
					t.Errorf("during apply %d: port %d got through %v (%v), want %v", applies.Load(), port, got, err, want)
					return
				}
				if want {
					allowed.Add(1)
				} else {
					denied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d applies, %d allowed and %d denied probes meanwhile", applies.Load(), allowed.Load(), denied.Load())
	if allowed.Load() < 20 || denied.Load() < 2 {
		t.Errorf("too few probes overlapped the applies (%d allowed, %d denied) to show anything", allowed.Load(), denied.Load())
	}
}

// TestSync_AfterRestartAdoptsKnownEnvironmentsAndRemovesLeftovers closes
// the driver (as a crash would leave things), starts another, and syncs it
// with the environments the store would still hold.
func TestSync_AfterRestartAdoptsKnownEnvironmentsAndRemovesLeftovers(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a, _ := l.env(t, "env-a", "198.18.0.10")
	b, _ := l.env(t, "env-b", "198.18.0.11")
	l.apply(t, "env-a", apiv1.EffectivePolicy{Generation: 3, Ingress: []apiv1.EffectiveRule{rule("web", nil, tcp(80))}})
	from := l.inetEnd("198.19.0.10")
	if err := l.d.Close(); err != nil {
		t.Fatal(err)
	}

	// Closed, the driver leaves its namespaces enforcing.
	if !isNamespace(a.Namespace) || !isNamespace(b.Namespace) {
		t.Fatal("Close removed namespaces")
	}
	if !send(t, probe("tcp", from, a, 80)) || send(t, probe("tcp", from, a, 22)) {
		t.Error("rules changed when the driver closed")
	}

	d2 := l.restart(t, ctx, map[string]string{"env-a": "198.18.0.10"})
	res, err := d2.Check(ctx, "env-a", apiv1.CheckRequest{Direction: "ingress", Protocol: "tcp", Address: from.Addr.String(), Port: 80})
	if err != nil || !res.Allowed || res.Matched == nil || res.Matched.PolicyID != "web" {
		t.Errorf("Check after adoption = %+v, %v; want allowed by policy web", res, err)
	}
	if !send(t, probe("tcp", from, a, 80)) || send(t, probe("tcp", from, a, 22)) {
		t.Error("adoption changed the rules")
	}
	if isNamespace(b.Namespace) || contains(linkNames(t, d2.RouterNamespace()), b.Namespace) {
		t.Error("Sync left the namespace or veth of an environment the store no longer has")
	}

	// A namespace lost while no driver ran (a reboot, `ip netns del`)
	// comes back with everything denied, until the next Apply.
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := netns.DeleteNamed(a.Namespace); err != nil {
		t.Fatal(err)
	}
	d3 := l.restart(t, ctx, map[string]string{"env-a": "198.18.0.10"})
	if !isNamespace(a.Namespace) {
		t.Fatal("Sync did not recreate a missing namespace")
	}
	netnstest.Serve(t, a.Namespace, probePort)
	if res, err := d3.Check(ctx, "env-a", apiv1.CheckRequest{Direction: "ingress", Protocol: "tcp", Address: from.Addr.String(), Port: 80}); err != nil || res.Allowed {
		t.Errorf("Check on a recreated namespace = %+v, %v; want denied", res, err)
	}
	if send(t, probe("tcp", from, a, 80)) {
		t.Error("a recreated namespace let a packet through before any Apply")
	}
	l.apply(t, "env-a", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("web", nil, tcp(80))}})
	if !send(t, probe("tcp", from, a, 80)) {
		t.Error("a recreated namespace is not reachable once its rules allow it")
	}
}

// TestApply_RevokingAnAllowCutsItsEstablishedFlows keeps one UDP flow open
// from the internet while the rules change: it lives on while an allow
// covers it and stops when none does, as a new flow would.
func TestApply_RevokingAnAllowCutsItsEstablishedFlows(t *testing.T) {
	l := newLab(t)
	a, _ := l.env(t, "env-a", "198.18.0.10")
	from := l.inetEnd("198.19.0.10")
	l.apply(t, "env-a", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("p", nil, udp(5432))}})
	var c *net.UDPConn
	err := netnstest.Do(from.Namespace, func() (err error) {
		c, err = net.DialUDP("udp", &net.UDPAddr{IP: from.Addr.AsSlice()}, &net.UDPAddr{IP: a.Addr.AsSlice(), Port: 5432})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoes := func() bool {
		if err := c.SetDeadline(time.Now().Add(denyTimeout)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		_, err := c.Read(buf)
		return err == nil
	}
	if !echoes() {
		t.Fatal("the flow does not start while allowed")
	}
	l.apply(t, "env-a", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("q", []apiv1.EffectivePeer{cidr("198.19.0.0/24")}, udp(5432))}})
	if !echoes() {
		t.Fatal("the flow was cut though another allow still covers it")
	}
	l.apply(t, "env-a", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("q", []apiv1.EffectivePeer{cidr("198.19.1.0/24")}, udp(5432))}})
	if echoes() {
		t.Fatal("the flow goes on after its allow was revoked")
	}
}

// TestProvision_AReusedAddressIsReachableAtOnce gives a deleted
// environment's address to a new one, right away, while the router and a
// peer still remember the old one in their neighbour caches.
func TestProvision_AReusedAddressIsReachableAtOnce(t *testing.T) {
	l := newLab(t)
	open := apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("in", nil)}, Egress: []apiv1.EffectiveRule{rule("out", nil)}}
	peer, _ := l.env(t, "env-peer", "198.18.0.20")
	l.apply(t, "env-peer", open)
	from := l.inetEnd("198.19.0.10")
	for round, id := range []string{"env-old", "env-new"} {
		e, _ := l.env(t, id, "198.18.0.10")
		l.apply(t, id, open)
		for _, p := range []netnstest.Probe{probe("tcp", from, e, 80), probe("tcp", peer, e, 80), probe("tcp", e, peer, 80)} {
			if !send(t, p) {
				t.Errorf("round %d: %s did not get through", round, p)
			}
		}
		if err := l.d.Teardown(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSync_MovesTheRulesANamespaceHeldItselfToTheRouter starts a driver
// on a namespace laid out as before the rules moved to the router (its
// own table recording its policy, nothing in the router): the policy it
// recorded is enforced from the router, and the namespace's table is gone.
func TestSync_MovesTheRulesANamespaceHeldItselfToTheRouter(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a, _ := l.env(t, "env-a", "198.18.0.10")
	l.apply(t, "env-a", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("web", nil, tcp(80))}})
	if err := l.d.Close(); err != nil {
		t.Fatal(err)
	}
	// The router forgets the record; the namespace gets one of its own
	// for another policy.
	router := nftConn(t, l.d.RouterNamespace())
	inet := &nftables.Table{Name: l.prefix, Family: nftables.TableFamilyINet}
	router.DelSet(&nftables.Set{Table: inet, Name: a.Namespace + "_applied"})
	if err := router.Flush(); err != nil {
		t.Fatal(err)
	}
	old := apiv1.EffectivePolicy{EnvironmentID: "env-a", Generation: 9, Ingress: []apiv1.EffectiveRule{rule("tls", nil, tcp(443))}}
	chunks, err := isonetns.EncodeRecord(old)
	if err != nil {
		t.Fatal(err)
	}
	own := nftConn(t, a.Namespace)
	table := own.AddTable(&nftables.Table{Name: l.prefix, Family: nftables.TableFamilyINet})
	var elems []nftables.SetElement
	for i, c := range chunks {
		elems = append(elems, nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, uint32(i)), Comment: c})
	}
	if err := own.AddSet(&nftables.Set{Table: table, ID: 1, Name: "applied_a", KeyType: nftables.TypeInteger}, elems); err != nil {
		t.Fatal(err)
	}
	if err := own.Flush(); err != nil {
		t.Fatal(err)
	}

	d2 := l.restart(t, ctx, map[string]string{"env-a": "198.18.0.10"})
	from := l.inetEnd("198.19.0.10")
	if res, err := d2.Check(ctx, "env-a", apiv1.CheckRequest{Direction: "ingress", Protocol: "tcp", Address: from.Addr.String(), Port: 443}); err != nil || !res.Allowed {
		t.Errorf("Check after the move = %+v, %v; want the namespace's recorded policy", res, err)
	}
	if !send(t, probe("tcp", from, a, 443)) || send(t, probe("tcp", from, a, 80)) {
		t.Error("the router does not enforce the policy the namespace recorded")
	}
	if tables := nftTables(t, a.Namespace); len(tables) > 0 {
		t.Errorf("the namespace still holds %d tables", len(tables))
	}
}
