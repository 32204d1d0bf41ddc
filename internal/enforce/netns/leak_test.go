package netns_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// TestLeak_HundredEnvironmentsLeaveNothingBehind creates a hundred
// environments from several goroutines, proves a few of them carry
// traffic, deletes them all, and then finds no namespace, link or
// nftables table with the prefix: not after the deletes (but for the
// router, whose tables keep only their shared chains and sets, empty),
// and nothing at all after Purge.
func TestLeak_HundredEnvironmentsLeaveNothingBehind(t *testing.T) {
	prefix := uniquePrefix(t)
	d := newDriver(t, prefix)
	t.Cleanup(func() { purge(t, d) })
	ctx := context.Background()
	const n = 100
	addr := func(i int) string { return fmt.Sprintf("198.18.1.%d", 10+i) }
	id := func(i int) string { return fmt.Sprintf("leak-%03d", i) }
	start := time.Now()
	parallel(t, n, func(i int) error {
		if _, err := d.Provision(ctx, id(i), addr(i)); err != nil {
			return err
		}
		// Each environment takes TCP port 80 from the next one only.
		return d.Apply(ctx, id(i), apiv1.EffectivePolicy{
			EnvironmentID: id(i),
			Ingress:       []apiv1.EffectiveRule{rule("ring", []apiv1.EffectivePeer{envPeer(addr((i + 1) % n))}, tcp(80))},
			Egress:        []apiv1.EffectiveRule{rule("any", nil)},
		})
	})
	t.Logf("%d environments provisioned and applied in %v", n, time.Since(start).Round(time.Millisecond))
	end := func(i int) netnstest.Endpoint {
		i %= n
		return netnstest.Endpoint{Env: id(i), Namespace: d.Namespace(id(i)), Addr: d.Addresses(netipAddr(addr(i)))[0]}
	}
	for _, i := range []int{0, 41, 98} {
		netnstest.Serve(t, end(i).Namespace, []int{80})
		if !send(t, probe("tcp", end(i+1), end(i), 80)) {
			t.Errorf("environment %d cannot reach %d", i+1, i)
		}
		if send(t, probe("tcp", end(i+2), end(i), 80)) {
			t.Errorf("environment %d reached %d", i+2, i)
		}
	}
	start = time.Now()
	parallel(t, n, func(i int) error { return d.Teardown(ctx, id(i)) })
	t.Logf("%d environments torn down in %v", n, time.Since(start).Round(time.Millisecond))

	if left := leftovers(t, prefix, d.RouterNamespace()); len(left) > 0 {
		t.Errorf("after deleting every environment: %s", strings.Join(left, "; "))
	}
	purge(t, d)
	if left := leftovers(t, prefix, ""); len(left) > 0 {
		t.Errorf("after Purge: %s", strings.Join(left, "; "))
	}
}

// leftovers lists the kernel objects with the prefix that remain:
// namespaces under /run/netns (but router), links and nftables tables in
// the host's namespace and in router, when it is given.
func leftovers(t *testing.T, prefix, router string) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Name() != router {
			out = append(out, "namespace "+e.Name())
		}
	}
	for _, ns := range []string{"", router} {
		if ns == "" && router != "" {
			continue
		}
		for _, name := range linkNames(t, ns) {
			if strings.HasPrefix(name, prefix) && !(ns == router && slices.Contains(routerLinks(prefix), name)) {
				out = append(out, fmt.Sprintf("link %s in namespace %q", name, ns))
			}
		}
		for _, table := range nftTables(t, ns) {
			if !strings.HasPrefix(table.Name, prefix) {
				continue
			}
			if ns != router || (table.Family != nftables.TableFamilyBridge && table.Family != nftables.TableFamilyINet) {
				out = append(out, fmt.Sprintf("nftables table %s in namespace %q", table.Name, ns))
				continue
			}
			// The router's tables stay with the router, but hold nothing
			// for environments that are gone: no element, and no chain or
			// set beyond those every environment shares.
			for _, e := range guardElements(t, ns, table) {
				out = append(out, fmt.Sprintf("guard element %q in namespace %q", e, ns))
			}
			for _, o := range routerObjects(t, ns, table) {
				if !slices.Contains(sharedObjects[table.Family], o) {
					out = append(out, fmt.Sprintf("%s in table %s of namespace %q", o, table.Name, ns))
				}
			}
		}
	}
	return out
}

// sharedObjects are the chains and sets of the router's tables that
// belong to no environment.
var sharedObjects = map[nftables.TableFamily][]string{
	nftables.TableFamilyBridge: {"chain prerouting", "chain forward", "set ports", "set macs", "set src_v4", "set src_v6"},
	nftables.TableFamilyINet:   {"chain prerouting", "chain postrouting", "set from_v4", "set from_v6", "set to_v4", "set to_v6"},
}

// routerObjects lists the chains and sets of table.
func routerObjects(t *testing.T, namespace string, table *nftables.Table) []string {
	t.Helper()
	c := nftConn(t, namespace)
	chains, err := c.ListChainsOfTableFamily(table.Family)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == table.Name {
			out = append(out, "chain "+ch.Name)
		}
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		out = append(out, "set "+s.Name)
	}
	return out
}

// routerLinks are the links the router namespace keeps while it exists:
// the bridge and the veth pair that keeps it up.
func routerLinks(prefix string) []string {
	return []string{prefix + "br", prefix + "brp", prefix + "brpx"}
}

// nftConn opens nftables in the named namespace ("" for the host's own;
// reading changes nothing).
func nftConn(t *testing.T, namespace string) *nftables.Conn {
	t.Helper()
	var opts []nftables.ConnOption
	if namespace != "" {
		h, err := netns.GetFromName(namespace)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close() // the connection dials per request, entering the namespace then
		opts = append(opts, nftables.WithNetNSFd(int(h)), nftables.AsLasting())
	}
	c, err := nftables.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.CloseLasting(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func nftTables(t *testing.T, namespace string) []*nftables.Table {
	t.Helper()
	tables, err := nftConn(t, namespace).ListTables()
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

// guardElements lists the elements of the guard table's sets, by key.
func guardElements(t *testing.T, namespace string, table *nftables.Table) []string {
	t.Helper()
	c := nftConn(t, namespace)
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			out = append(out, fmt.Sprintf("%s: %x", s.Name, e.Key))
		}
	}
	return out
}

// parallel runs fn for 0..n-1 on eight goroutines and fails on any error;
// tests and benchmarks share it, so it takes testing.TB.
func parallel(t testing.TB, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				errs[i] = fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
}

// TestLeak_TheDNSProxyAndNameAllowancesLeaveNothingBehind: environments
// that resolved names hold elements in their fqdn maps; tearing them down
// removes those with the rest, and closing the driver closes the proxy's
// sockets (UDP and TCP port 53 on each gateway address) in the router
// namespace.
func TestLeak_TheDNSProxyAndNameAllowancesLeaveNothingBehind(t *testing.T) {
	l := newDNSLab(t)
	ctx := context.Background()
	l.zone.set("api.example.test", "api.example.test. 300 IN A "+nameHostA.String())
	router := l.d.RouterNamespace()
	want := []string{"tcp 198.18.0.1:53", "tcp [fd00:198:18::c612:1]:53", "udp 198.18.0.1:53", "udp [fd00:198:18::c612:1]:53"}
	if got := dnsSockets(t, router); !slices.Equal(got, want) {
		t.Fatalf("the proxy listens on %v, want %v", got, want)
	}
	for i := range 3 {
		id := fmt.Sprintf("leak-%d", i)
		ep, err := l.d.Provision(ctx, id, fmt.Sprintf("198.18.0.%d", 10+i))
		if err != nil {
			t.Fatal(err)
		}
		applyTo(t, l.d, id, apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("names", []apiv1.EffectivePeer{fqdnPeer("api.example.test")}, tcp(443))}})
		resolve(t, ep.Namespace, "api.example.test")
		if n := fqdnElements(t, router, l.prefix, ep.Namespace); n == 0 {
			t.Fatalf("environment %s resolved a name but its fqdn maps are empty", id)
		}
		if err := l.d.Teardown(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// The uplink's end and nat table stay with the router (the uplink
	// leak test covers them).
	uplink := []string{fmt.Sprintf("link %suplink in namespace %q", l.prefix, router), fmt.Sprintf("nftables table %s in namespace %q", l.prefix, router)}
	if left := slices.DeleteFunc(leftovers(t, l.prefix, router), func(s string) bool { return slices.Contains(uplink, s) }); len(left) > 0 {
		t.Errorf("after tearing down every environment: %s", strings.Join(left, "; "))
	}
	if err := l.d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dnsSockets(t, router); len(got) > 0 {
		t.Errorf("after Close the router namespace still has the proxy's sockets %v", got)
	}
	l.d = newDriver(t, l.prefix) // purged when the test ends
}

// fqdnElements counts the elements of env's fqdn maps.
func fqdnElements(t *testing.T, router, table, env string) int {
	t.Helper()
	c := nftConn(t, router)
	n := 0
	for _, name := range []string{env + "_fqdn_v4", env + "_fqdn_v6"} {
		s, err := c.GetSetByName(&nftables.Table{Name: table, Family: nftables.TableFamilyINet}, name)
		if err != nil {
			t.Fatal(err)
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		n += len(elems)
	}
	return n
}

// dnsSockets lists the sockets bound to port 53 in namespace ns.
func dnsSockets(t *testing.T, ns string) []string {
	t.Helper()
	socks, err := netnstest.Sockets(ns, 53)
	if err != nil {
		t.Fatal(err)
	}
	return socks
}
