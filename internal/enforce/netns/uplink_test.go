package netns_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// The uplink lab's addresses: the link network and the fake internet's
// hosts, all in 198.19.0.0/16, clear of the pool.
var (
	uplinkNet   = netip.MustParsePrefix("198.19.255.0/30")
	routerWAN   = netip.MustParseAddr("198.19.255.2") // the router's end: what the internet sees
	allowedHost = netip.MustParseAddr("198.19.128.10")
	deniedHost  = netip.MustParseAddr("198.19.128.11")
)

// fastBound is how soon a refused flow must fail for the process.
const fastBound = time.Second

// wanLab is a driver whose uplink leads to a fake internet namespace,
// which answers on allowedHost and deniedHost and records who connects.
type wanLab struct {
	prefix, wan string
	d           *netns.Driver
	// accepted receives the remote address of each TCP connection to
	// port 443, once the listener has accepted it.
	accepted chan netip.Addr
}

func newWANLab(t *testing.T) *wanLab {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	l := &wanLab{prefix: uniquePrefix(t), accepted: make(chan netip.Addr, 16)}
	l.wan = "wan-" + l.prefix // not the prefix: the leak test finds every object with it
	netnstest.NewNamespace(t, l.wan)
	err := netnstest.Do(l.wan, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		for _, a := range []netip.Addr{allowedHost, deniedHost} {
			if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Serve(t, l.wan, []int{53})
	l.listen(t)
	d, err := netns.New(netns.Config{Prefix: l.prefix, Pool: pool, Pool6: pool6, Uplink: "netns:" + l.wan, UplinkNet: uplinkNet, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	l.d = d
	t.Cleanup(func() { purge(t, l.d) })
	return l
}

// listen accepts TCP connections on port 443 in the internet namespace
// and records where each came from.
func (l *wanLab) listen(t *testing.T) {
	var ln net.Listener
	if err := netnstest.Do(l.wan, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(allowedHost, 443).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select { // never blocks the cleanup's wait
			case l.accepted <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap():
			default:
			}
			c.Close()
		}
	})
}

// dial connects from the environment's namespace and reports the error
// and how long it took.
func dial(t *testing.T, ns, network string, to netip.AddrPort) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	var c net.Conn
	err := netnstest.Do(ns, func() (err error) {
		c, err = (&net.Dialer{Timeout: 3 * fastBound}).Dial(network, to.String())
		return err
	})
	if err == nil && strings.HasPrefix(network, "udp") {
		// A datagram's refusal comes back as an error on the socket.
		defer c.Close()
		if _, err = c.Write([]byte("probe")); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(3 * fastBound))
			_, err = c.Read(make([]byte, 16))
		}
		return time.Since(start), err
	}
	if err == nil {
		c.Close()
	}
	return time.Since(start), err
}

// TestUplink_EnvironmentsReachTheOutsideOnlyAsTheirEgressAllows connects
// the router to a fake internet: an environment reaches the address its
// rules allow, seen there from the router's masqueraded address, and a
// flow its rules deny fails at once (a reset, or ICMP administratively
// prohibited); what the internet sends the environment unasked is still
// dropped silently; Check warns of nothing.
func TestUplink_EnvironmentsReachTheOutsideOnlyAsTheirEgressAllows(t *testing.T) {
	l := newWANLab(t)
	ctx := context.Background()
	ep, err := l.d.Provision(ctx, "env-a", "198.18.0.10")
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Serve(t, ep.Namespace, []int{80})
	p := apiv1.EffectivePolicy{EnvironmentID: "env-a", Egress: []apiv1.EffectiveRule{
		rule("out", []apiv1.EffectivePeer{cidr(allowedHost.String() + "/32")}, tcp(443), udp(53)),
	}}
	if err := l.d.Apply(ctx, "env-a", p); err != nil {
		t.Fatal(err)
	}
	env := ep.Namespace

	if _, err := dial(t, env, "tcp4", netip.AddrPortFrom(allowedHost, 443)); err != nil {
		t.Fatalf("allowed tcp through the uplink: %v", err)
	}
	// The client's handshake can finish before the listener accepts.
	select {
	case from := <-l.accepted:
		if from != routerWAN {
			t.Errorf("the internet saw a connection from %s, want one from the router's uplink address %s", from, routerWAN)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the internet accepted no connection within 5 s of the environment's")
	}
	if _, err := dial(t, env, "udp4", netip.AddrPortFrom(allowedHost, 53)); err != nil {
		t.Errorf("allowed udp through the uplink: %v", err)
	}

	took, err := dial(t, env, "tcp4", netip.AddrPortFrom(deniedHost, 443))
	if !errors.Is(err, syscall.ECONNREFUSED) || took > fastBound {
		t.Errorf("denied tcp: %v after %v, want ECONNREFUSED (a reset) within %v", err, took, fastBound)
	}
	t.Logf("denied tcp reset in %v", took)
	took, err = dial(t, env, "tcp4", netip.AddrPortFrom(allowedHost, 80))
	if !errors.Is(err, syscall.ECONNREFUSED) || took > fastBound {
		t.Errorf("denied tcp port: %v after %v, want ECONNREFUSED (a reset) within %v", err, took, fastBound)
	}
	took, err = dial(t, env, "udp4", netip.AddrPortFrom(deniedHost, 53))
	if !netnstest.Refused(err) || took > fastBound {
		t.Errorf("denied udp: %v after %v, want EHOSTUNREACH (administratively prohibited) within %v", err, took, fastBound)
	}
	t.Logf("denied udp refused in %v", took)
	// The internet sends to the environment through the router.
	if err := netnstest.Do(l.wan, func() error {
		return netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: pool.Addr().AsSlice(), Mask: net.CIDRMask(pool.Bits(), 32)}, Gw: routerWAN.AsSlice()})
	}); err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, l.wan, "tcp4", netip.MustParseAddrPort("198.18.0.10:80"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("denied ingress: %v, want a timeout (dropped silently)", err)
	}

	res, err := l.d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP, Address: allowedHost.String(), Port: 443})
	if err != nil || !res.Allowed || len(res.Warnings) != 0 {
		t.Errorf("check with an uplink: %+v, %v; want allowed without warnings", res, err)
	}
}

// TestDenyFast_RefusedBetweenEnvironments refuses, on IPv4 and IPv6, the
// flows an environment's egress rules deny towards another environment,
// which would accept them: a reset for TCP, an ICMP error for UDP.
func TestDenyFast_RefusedBetweenEnvironments(t *testing.T) {
	l := newLab(t)
	_, _ = l.env(t, "env-a", "198.18.0.10")
	b, b6 := l.env(t, "env-b", "198.18.0.11")
	l.apply(t, "env-a", apiv1.EffectivePolicy{Egress: []apiv1.EffectiveRule{rule("web", nil, tcp(80))}})
	l.apply(t, "env-b", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("any", nil)}})
	ns := l.d.Namespace("env-a")
	for _, to := range []netip.Addr{b.Addr, b6.Addr} {
		if _, err := dial(t, ns, "tcp", netip.AddrPortFrom(to, 80)); err != nil {
			t.Errorf("allowed tcp to %s: %v", to, err)
		}
		took, err := dial(t, ns, "tcp", netip.AddrPortFrom(to, 22))
		if !errors.Is(err, syscall.ECONNREFUSED) || took > fastBound {
			t.Errorf("denied tcp to %s: %v after %v, want ECONNREFUSED within %v", to, err, took, fastBound)
		}
		took, err = dial(t, ns, "udp", netip.AddrPortFrom(to, 80))
		if !netnstest.Refused(err) || took > fastBound {
			t.Errorf("denied udp to %s: %v after %v, want an ICMP error within %v", to, err, took, fastBound)
		}
	}
}

// TestCheck_SaysWhenThereIsNoUplink: an egress the rules allow to an
// address outside the pools has nowhere to go without an uplink, and
// Check says so; one to an environment does not need it.
func TestCheck_SaysWhenThereIsNoUplink(t *testing.T) {
	prefix := uniquePrefix(t)
	d := newDriver(t, prefix)
	t.Cleanup(func() { purge(t, d) })
	ctx := context.Background()
	if _, err := d.Provision(ctx, "env-a", "198.18.0.10"); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(ctx, "env-a", apiv1.EffectivePolicy{EnvironmentID: "env-a", Egress: []apiv1.EffectiveRule{rule("any", nil)}}); err != nil {
		t.Fatal(err)
	}
	for addr, warn := range map[string]bool{"198.19.0.10": true, "198.18.0.11": false, "fd00:198:18::c612:b": false} {
		res, err := d.Check(ctx, "env-a", apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: apiv1.ProtocolTCP, Address: addr, Port: 443})
		if err != nil || !res.Allowed {
			t.Fatalf("check %s: %+v, %v", addr, res, err)
		}
		if got := slices.Contains(res.Warnings, netns.NoUplinkWarning); got != warn {
			t.Errorf("check %s: warnings %q, want the no-uplink warning %v", addr, res.Warnings, warn)
		}
	}
}

// TestLeak_UplinkLeavesNothingBehind: Purge by a driver started without
// the uplink, as `isolationd cleanup` is, removes the uplink's both ends
// and the router's nat table with the rest.
func TestLeak_UplinkLeavesNothingBehind(t *testing.T) {
	l := newWANLab(t)
	if err := l.d.Close(); err != nil {
		t.Fatal(err)
	}
	if names := linkNames(t, l.wan); !slices.Contains(names, l.prefix+"router") {
		t.Fatalf("the internet has links %v, want the uplink's end %srouter", names, l.prefix)
	}
	l.d = newDriver(t, l.prefix)
	purge(t, l.d)
	if left := leftovers(t, l.prefix, ""); len(left) > 0 {
		t.Errorf("after Purge: %s", strings.Join(left, "; "))
	}
	for _, name := range linkNames(t, l.wan) {
		if strings.HasPrefix(name, l.prefix) {
			t.Errorf("after Purge, link %s is left in the internet namespace", name)
		}
	}
}
