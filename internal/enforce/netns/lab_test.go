package netns_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// quietLogger keeps the driver's lifecycle events out of test output.
var quietLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// skipReason is why these tests cannot run here, probed once.
var skipReason string

func TestMain(m *testing.M) {
	skipReason = netnstest.Supported()
	os.Exit(m.Run())
}

// The lab's address plan: environments in 198.18.0.0/16 (and fd00:198:18::/96),
// the internet in 198.19.0.0/16 (and fd00:198:19::/64). Every lab has its
// own router namespace, so labs never see each other's addresses.
var (
	pool      = netip.MustParsePrefix("198.18.0.0/16")
	pool6     = netip.MustParsePrefix("fd00:198:18::/96")
	inetNet   = netip.MustParsePrefix("198.19.0.0/16")
	inetNet6  = netip.MustParsePrefix("fd00:198:19::/64")
	probePort = []int{22, 80, 443, 1000, 1001, 1005, 1009, 1010, 5432, 8080}
)

// lab is a driver under test with its own prefix, and an internet.
type lab struct {
	prefix string
	d      *netns.Driver // replaced by tests that restart the driver
	inet   *netnstest.Internet
}

// uniquePrefix makes a driver prefix no other test run uses.
func uniquePrefix(t testing.TB) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "t" + string(b)
}

func newDriver(t testing.TB, prefix string) *netns.Driver {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	d, err := netns.New(netns.Config{Prefix: prefix, Pool: pool, Pool6: pool6, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newLab starts a driver and an internet joined to its router, and purges
// both when the test ends.
func newLab(t testing.TB) *lab {
	t.Helper()
	return newLabWith(t, nil)
}

// newLabWith is newLab with the driver's configuration changed by edit
// (when not nil) and more hosts in the internet.
func newLabWith(t testing.TB, edit func(*netns.Config), hosts ...netip.Addr) *lab {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	prefix := uniquePrefix(t)
	cfg := netns.Config{Prefix: prefix, Pool: pool, Pool6: pool6, Logger: quietLogger}
	if edit != nil {
		edit(&cfg)
	}
	d, err := netns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{prefix: prefix, d: d}
	t.Cleanup(func() { purge(t, l.d) })
	l.inet = netnstest.NewInternet(t, netnstest.InternetConfig{
		Namespace: prefix + "-internet",
		Router:    l.d.RouterNamespace(),
		Uplink:    prefix + "up",
		Nets:      []netip.Prefix{inetNet, inetNet6},
		Hosts:     append(slices.Clone(internetHosts), hosts...),
	})
	netnstest.Serve(t, l.inet.Namespace, probePort)
	return l
}

func purge(t testing.TB, d *netns.Driver) {
	if err := d.Purge(context.Background()); err != nil {
		t.Errorf("purge: %v", err)
	}
}

var internetHosts = []netip.Addr{
	netip.MustParseAddr("198.19.0.10"),
	netip.MustParseAddr("198.19.0.200"),
	netip.MustParseAddr("198.19.1.10"),
	netip.MustParseAddr("198.19.1.77"),
	netip.MustParseAddr("198.19.2.5"),
	netip.MustParseAddr("198.19.200.9"),
	netip.MustParseAddr("fd00:198:19::10"),
	netip.MustParseAddr("fd00:198:19::8:1"),
	netip.MustParseAddr("fd00:198:19::ff:2"),
}

// inetEnd is the internet at one of its addresses.
func (l *lab) inetEnd(a string) netnstest.Endpoint {
	return netnstest.Endpoint{Namespace: l.inet.Namespace, Addr: netip.MustParseAddr(a)}
}

// envEnds provisions envID at address and serves on the probe ports in its
// namespace; it returns the environment's IPv4 and IPv6 ends.
func (l *lab) env(t testing.TB, envID, address string) (v4, v6 netnstest.Endpoint) {
	t.Helper()
	ep, err := l.d.Provision(context.Background(), envID, address)
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Serve(t, ep.Namespace, probePort)
	addrs := l.d.Addresses(netip.MustParseAddr(address))
	return netnstest.Endpoint{Env: envID, Namespace: ep.Namespace, Addr: addrs[0]},
		netnstest.Endpoint{Env: envID, Namespace: ep.Namespace, Addr: addrs[1]}
}

func (l *lab) apply(t testing.TB, envID string, p apiv1.EffectivePolicy) {
	t.Helper()
	p.EnvironmentID = envID
	if err := l.d.Apply(context.Background(), envID, p); err != nil {
		t.Fatal(err)
	}
}

// denyTimeout is how long a probe waits before calling its packet dropped.
const denyTimeout = 250 * time.Millisecond

// send sends one probe and fails the test on a set-up error.
func send(t testing.TB, p netnstest.Probe) bool {
	t.Helper()
	got, err := netnstest.Send(context.Background(), p, denyTimeout)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return got
}

func probe(proto string, from, to netnstest.Endpoint, port int) netnstest.Probe {
	return netnstest.Probe{From: from, To: to, Protocol: proto, Port: port}
}

func ptr[T any](v T) *T { return &v }

// rule builds an effective rule from peers and ports, traced to policy pid.
func rule(pid string, peers []apiv1.EffectivePeer, ports ...apiv1.Port) apiv1.EffectiveRule {
	return apiv1.EffectiveRule{PolicyID: pid, PolicyName: pid, Peers: peers, Ports: ports}
}

func cidr(c string, except ...string) apiv1.EffectivePeer {
	return apiv1.EffectivePeer{Peer: apiv1.Peer{CIDR: c, Except: except}}
}

func envPeer(addrs ...string) apiv1.EffectivePeer {
	p := apiv1.EffectivePeer{Peer: apiv1.Peer{EnvironmentSelector: &apiv1.Selector{}}}
	for i, a := range addrs {
		p.Environments = append(p.Environments, apiv1.PeerEnvironment{ID: fmt.Sprint("peer", i), Address: a})
	}
	return p
}

func tcp(port int) apiv1.Port { return apiv1.Port{Protocol: apiv1.ProtocolTCP, Port: ptr(port)} }
func udp(port int) apiv1.Port { return apiv1.Port{Protocol: apiv1.ProtocolUDP, Port: ptr(port)} }
func tcpRange(lo, hi int) apiv1.Port {
	return apiv1.Port{Protocol: apiv1.ProtocolTCP, Port: ptr(lo), EndPort: ptr(hi)}
}
func icmpAny() apiv1.Port { return apiv1.Port{Protocol: apiv1.ProtocolICMP} }

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// restart starts a driver on the lab's prefix, as isolationd does after a
// restart, syncs it with the environments the store holds and makes it
// the lab's.
func (l *lab) restart(t testing.TB, ctx context.Context, envs map[string]string) *netns.Driver {
	t.Helper()
	d, err := netns.New(netns.Config{Prefix: l.prefix, Pool: pool, Pool6: pool6, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	l.d = d
	if err := d.Sync(ctx, envs); err != nil {
		t.Fatal(err)
	}
	return d
}
