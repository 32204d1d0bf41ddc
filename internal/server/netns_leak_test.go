package server_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	netnsdriver "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// A hundred environments created and deleted through the API, eight at a
// time, leave no kernel object behind but the router's own: its
// namespace, its bridge with the veth pair that keeps it up, and its
// tables (bridge and inet), emptied. Those stay by design while the server runs and
// after it shuts down (the next start adopts them); purging the prefix
// removes them too.
func TestNetnsAPI_HundredEnvironmentsCreatedAndDeletedLeaveOnlyTheRouter(t *testing.T) {
	cfg := labConfig(t, netnsdriver.DriverName)
	l := startLab(t, cfg)
	p := cfg.NetnsPrefix
	router := l.driver().RouterNamespace()
	routerOnly := []string{
		fmt.Sprintf("link %sbr in %s", p, router),
		fmt.Sprintf("link %sbrp in %s", p, router),
		fmt.Sprintf("link %sbrpx in %s", p, router),
		"namespace " + router,
		fmt.Sprintf("nftables bridge table %s in %s: 0 set elements", p, router),
		fmt.Sprintf("nftables inet table %s in %s: 0 set elements", p, router),
	}
	slices.Sort(routerOnly)
	if diff := cmp.Diff(routerOnly, inventory(t, p)); diff != "" {
		t.Fatalf("before any environment (-want +got):\n%s", diff)
	}
	// The DNS proxy listens on UDP and TCP port 53 of both gateways.
	if n := dnsSockets(t, router); n != 4 {
		t.Errorf("the router namespace has %d sockets on port 53, want the proxy's 4", n)
	}

	const n = 100
	start := time.Now()
	envs := l.createMany(n, func(int) map[string]string { return nil })
	t.Logf("%d environments ready in %v", n, time.Since(start).Round(time.Millisecond))
	// The inventory sees what the environments own: a namespace each, and
	// a veth each in the router namespace.
	present := inventory(t, p)
	for _, e := range envs {
		for _, want := range []string{"namespace " + e.Enforcement.Namespace, fmt.Sprintf("link %s in %s", e.Enforcement.Namespace, router)} {
			if !slices.Contains(present, want) {
				t.Fatalf("environment %s is ready but the host has no %s", e.ID, want)
			}
		}
	}

	start = time.Now()
	l.deleteAll(envs)
	t.Logf("%d environments deleted in %v", n, time.Since(start).Round(time.Millisecond))
	if diff := cmp.Diff(routerOnly, inventory(t, p)); diff != "" {
		t.Errorf("after deleting every environment through the API (-want +got):\n%s", diff)
	}

	l.shutdown()
	if diff := cmp.Diff(routerOnly, inventory(t, p)); diff != "" {
		t.Errorf("after Shutdown, which leaves the router for the next start (-want +got):\n%s", diff)
	}
	if n := dnsSockets(t, router); n != 0 {
		t.Errorf("after Shutdown the router namespace has %d sockets on port 53, want none", n)
	}
	purgePrefix(t, cfg)
	if got := inventory(t, p); len(got) > 0 {
		t.Errorf("after purging the prefix: %s", strings.Join(got, "; "))
	}
}

// inventory lists, sorted, every kernel object named with prefix: the
// namespaces under /run/netns, and the links and nftables tables (with
// how many elements their sets hold) in the host's namespace and in each
// of those namespaces.
func inventory(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	spaces := []string{""} // the host's own
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, "namespace "+e.Name())
			spaces = append(spaces, e.Name())
		}
	}
	for _, ns := range spaces {
		where := ns
		if where == "" {
			where = "the host's namespace"
		}
		inNamespace(t, ns, func(h netns.NsHandle) {
			nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
			if err != nil {
				t.Fatal(err)
			}
			defer nl.Close()
			links, err := nl.LinkList()
			if err != nil {
				t.Fatal(err)
			}
			for _, link := range links {
				if strings.HasPrefix(link.Attrs().Name, prefix) {
					out = append(out, fmt.Sprintf("link %s in %s", link.Attrs().Name, where))
				}
			}
			c, err := nftables.New(nftables.WithNetNSFd(int(h)), nftables.AsLasting())
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.CloseLasting(); err != nil {
					t.Errorf("close the nftables connection: %v", err)
				}
			}()
			tables, err := c.ListTables()
			if err != nil {
				t.Fatal(err)
			}
			for _, table := range tables {
				if strings.HasPrefix(table.Name, prefix) {
					out = append(out, fmt.Sprintf("nftables %s table %s in %s: %d set elements", family(table.Family), table.Name, where, setElements(t, c, table)))
				}
			}
		})
	}
	slices.Sort(out)
	return out
}

// inNamespace calls fn with a handle on the named namespace ("" for the
// host's own).
func inNamespace(t *testing.T, name string, fn func(netns.NsHandle)) {
	t.Helper()
	var h netns.NsHandle
	var err error
	if name == "" {
		h, err = netns.Get()
	} else {
		h, err = netns.GetFromName(name)
	}
	if err != nil {
		t.Fatalf("namespace %q: %v", name, err)
	}
	defer h.Close()
	fn(h)
}

func setElements(t *testing.T, c *nftables.Conn, table *nftables.Table) int {
	t.Helper()
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		n += len(elems)
	}
	return n
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return fmt.Sprintf("family-%d", f)
}

// dnsSockets counts the sockets bound to port 53 in namespace ns.
func dnsSockets(t *testing.T, ns string) int {
	t.Helper()
	socks, err := netnstest.Sockets(ns, 53)
	if err != nil {
		t.Fatal(err)
	}
	return len(socks)
}
