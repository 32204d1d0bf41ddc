package netns_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// TestUplink_HostForwardsAndMasqueradesAndForgetsItAll plays the host in
// a namespace of its own ("host"), joined to a fake internet that can
// route only to the host's own address: an environment reaches the
// internet only because the driver made the host forward its packets and
// masquerade them (seen there from the host's address), and Purge turns
// the host's forwarding off again and removes its table.
func TestUplink_HostForwardsAndMasqueradesAndForgetsItAll(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	prefix := uniquePrefix(t)
	host, inet := "host-"+prefix, "inet-"+prefix
	hostAddr, server := netip.MustParseAddr("198.19.254.1"), netip.MustParseAddrPort("198.19.254.2:443")
	netnstest.NewNamespace(t, host)
	netnstest.NewInternet(t, netnstest.InternetConfig{
		Namespace: inet, Router: host, Uplink: "wan0",
		Nets: []netip.Prefix{netip.MustParsePrefix("198.19.254.0/30")}, Hosts: []netip.Addr{server.Addr()},
	})
	// The host's default route leads to the internet, whose only route
	// back is to the host's address on their link.
	if err := netnstest.Do(host, func() error {
		wan, err := netlink.LinkByName("wan0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: wan.Attrs().Index, Gw: server.Addr().AsSlice()})
	}); err != nil {
		t.Fatal(err)
	}
	if err := netnstest.Do(inet, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.RouteDel(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: hostAddr.AsSlice()})
	}); err != nil {
		t.Fatal(err)
	}
	seen := make(chan netip.Addr, 4)
	var ln net.Listener
	if err := netnstest.Do(inet, func() (err error) {
		ln, err = net.Listen("tcp4", server.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap():
			default:
			}
			c.Close()
		}
	}()

	d, err := netns.New(netns.WithHostNAT(netns.Config{Prefix: prefix, Pool: pool, Uplink: "netns:" + host,
		UplinkNet: netip.MustParsePrefix("198.19.253.0/30"), Logger: quietLogger}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { purge(t, d) })
	if !forwarding(t, host, "wan0") {
		t.Fatal("the host's forwarding on its default route's interface is still off")
	}
	ctx := context.Background()
	ep, err := d.Provision(ctx, "env-a", "198.18.0.10")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(ctx, "env-a", apiv1.EffectivePolicy{EnvironmentID: "env-a", Egress: []apiv1.EffectiveRule{
		rule("out", []apiv1.EffectivePeer{cidr(server.Addr().String() + "/32")}, tcp(443)),
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, ep.Namespace, "tcp4", server); err != nil {
		t.Fatalf("through the host's uplink: %v", err)
	}
	select {
	case from := <-seen:
		if from != hostAddr {
			t.Errorf("the internet saw %s, want the host's address %s", from, hostAddr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the internet accepted no connection within 5 s of the environment's")
	}

	// A restart adopts the table and keeps what it turned on.
	d.Close()
	if d, err = netns.New(netns.WithHostNAT(netns.Config{Prefix: prefix, Pool: pool, Uplink: "netns:" + host,
		UplinkNet: netip.MustParsePrefix("198.19.253.0/30"), Logger: quietLogger})); err != nil {
		t.Fatal(err)
	}
	if err := d.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if forwarding(t, host, "wan0") {
		t.Error("after Purge the host still forwards on wan0, which the driver turned on")
	}
	if err := netnstest.Do(host, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTables()
		for _, tb := range tables {
			if tb.Name == netns.HostTable(prefix) {
				t.Errorf("after Purge the host still has table %s", tb.Name)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func forwarding(t *testing.T, ns, ifname string) bool {
	t.Helper()
	var b []byte
	if err := netnstest.Do(ns, func() (err error) {
		b, err = os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf", ifname, "forwarding"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b)) == "1"
}
