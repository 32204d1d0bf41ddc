// Package netnstest sends real packets between network namespaces, to
// prove what an enforcement driver does: namespaces of its own (such as
// one playing "the internet"), listeners that answer on every port asked
// for, and a prober that compares each packet's fate with what a policy
// oracle (the driver's Check, or the API's check endpoint) says about it.
//
// Through the API, an Endpoint is an environment's id, its
// enforcement.namespace and enforcement.address; the Oracle posts to
// /v1/environments/{id}/check; the Internet joins the router namespace
// the server's netns driver reports (RouterNamespace); Generator draws
// the policy specs to create and the probes; Run does the rest.
package netnstest

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	enforcens "github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
)

// Do runs fn on an OS thread inside the named namespace (a name under
// /run/netns). Sockets fn creates stay in that namespace for good, so
// only their creation needs to happen here.
func Do(namespace string, fn func() error) error {
	h, err := netns.GetFromName(namespace)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", namespace, err)
	}
	defer h.Close()
	return enforcens.OnLockedThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter namespace %s: %w", namespace, err)
		}
		return fn()
	})
}

// Supported reports why the kernel refuses network namespaces, or "" when
// it allows them.
func Supported() string {
	err := enforcens.OnLockedThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) })
	if err != nil {
		return fmt.Sprintf("the kernel refuses to create a network namespace (%v): these tests need root or CAP_SYS_ADMIN and CAP_NET_ADMIN", err)
	}
	return ""
}

// UniquePrefix is a driver prefix no other test run uses: lead, then five
// random lowercase letters or digits.
func UniquePrefix(lead byte) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(lead) + string(b)
}

// NewNamespace creates a named namespace, with loopback up, and removes
// it when the test ends.
func NewNamespace(t testing.TB, name string) {
	t.Helper()
	if err := CreateNamespace(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
}

// CreateNamespace creates a named namespace with loopback up, for a
// caller that is not a test (the demo's internet), which deletes it with
// netns.DeleteNamed.
func CreateNamespace(name string) error {
	err := enforcens.OnLockedThread(func() error {
		h, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		defer h.Close()
		// No duplicate address detection: a tentative link-local
		// address stalls IPv6 neighbour discovery for a second.
		for _, key := range []string{"all", "default"} {
			// The file exists: a mode would apply only to a file created.
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+key+"/accept_dad", []byte("0"), 0); err != nil {
				return err
			}
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// AddLoopbackAddrs gives the named namespace's loopback each address as
// a /32 (or /128): a namespace answering on many addresses with no link
// of its own for them, as the far end of an uplink.
func AddLoopbackAddrs(namespace string, addrs ...netip.Addr) error {
	return Do(namespace, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}); err != nil {
				return fmt.Errorf("address %s on lo in %s: %w", a, namespace, err)
			}
		}
		return nil
	})
}

// Internet is a namespace standing for the world outside the
// environments: joined to a router namespace by a veth pair, answering on
// many addresses.
type Internet struct {
	Namespace string
	Addrs     []netip.Addr
}

// InternetConfig describes an Internet.
type InternetConfig struct {
	Namespace string         // the namespace to create
	Router    string         // the router namespace to join
	Uplink    string         // the veth's name on the router side
	Nets      []netip.Prefix // its subnets; the router takes the first host of each
	Hosts     []netip.Addr   // addresses it answers on, inside Nets
}

// NewInternet builds the namespace and its link to the router, and takes
// them down when the test ends.
func NewInternet(t testing.TB, cfg InternetConfig) *Internet {
	t.Helper()
	NewNamespace(t, cfg.Namespace)
	inet, err := netns.GetFromName(cfg.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	defer inet.Close()
	router, err := netns.GetFromName(cfg.Router)
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	inl, err := netlink.NewHandleAt(inet, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer inl.Close()
	rnl, err := netlink.NewHandleAt(router, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer rnl.Close()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: cfg.Uplink, PeerNamespace: netlink.NsFd(int(router))}
	if err := inl.LinkAdd(veth); err != nil {
		t.Fatalf("uplink veth: %v", err)
	}
	t.Cleanup(func() {
		// Deleting our end takes the router's end with it now, rather
		// than whenever the kernel gets round to freeing the namespace.
		if err := Do(cfg.Namespace, func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkDel(l)
		}); err != nil {
			t.Errorf("delete uplink: %v", err)
		}
	})
	eth0, err := inl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := rnl.LinkByName(cfg.Uplink)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cfg.Nets {
		gw := n.Masked().Addr().Next()
		addAddr(t, rnl, up, netip.PrefixFrom(gw, n.Bits()))
		for _, h := range cfg.Hosts {
			if n.Contains(h) {
				addAddr(t, inl, eth0, netip.PrefixFrom(h, n.Bits()))
			}
		}
	}
	for _, l := range []struct {
		h    *netlink.Handle
		link netlink.Link
	}{{rnl, up}, {inl, eth0}} {
		if err := l.h.LinkSetUp(l.link); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitUp(inl, "eth0", rnl, cfg.Uplink); err != nil {
		t.Fatal(err)
	}
	for _, n := range cfg.Nets {
		gw := n.Masked().Addr().Next()
		if err := inl.RouteReplace(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IP(gw.AsSlice())}); err != nil {
			t.Fatalf("default route via %s: %v", gw, err)
		}
	}
	return &Internet{Namespace: cfg.Namespace, Addrs: cfg.Hosts}
}

func addAddr(t testing.TB, h *netlink.Handle, link netlink.Link, p netip.Prefix) {
	t.Helper()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatalf("address %s: %v", p, err)
	}
}

// waitUp waits until both ends of a veth pair are operational: until the
// kernel's linkwatch gets to them, they drop what they are given.
func waitUp(h1 *netlink.Handle, name1 string, h2 *netlink.Handle, name2 string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l1, err := h1.LinkByName(name1)
		if err != nil {
			return err
		}
		l2, err := h2.LinkByName(name2)
		if err != nil {
			return err
		}
		if l1.Attrs().OperState == netlink.OperUp && l2.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("veth %s/%s not operational after 5s", name1, name2)
		}
		time.Sleep(time.Millisecond) // linkwatch offers nothing to wait on
	}
}
