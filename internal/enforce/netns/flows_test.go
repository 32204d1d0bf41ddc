package netns_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// flowSink collects the records a driver hands on.
type flowSink struct {
	mu    sync.Mutex
	flows []apiv1.Flow
}

func (s *flowSink) add(batch []apiv1.Flow) {
	s.mu.Lock()
	s.flows = append(s.flows, batch...)
	s.mu.Unlock()
}

func (s *flowSink) all() []apiv1.Flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.flows)
}

// startFlows turns flow logs on, with conntrack forgetting closed and
// unanswered flows within a second, so that the records of allowed flows,
// written when the kernel forgets them, come in a test's time.
func startFlows(t testing.TB, d *netns.Driver) *flowSink {
	t.Helper()
	netnstest.ShortConntrackTimeouts(t, d.RouterNamespace())
	s := &flowSink{}
	if err := d.StartFlowLogs(s.add); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFlows waits, for at most a minute, until the records' ids hold
// every one of want, and returns the records.
func waitFlows(t testing.TB, all func() []apiv1.Flow, want []string) []apiv1.Flow {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := all()
		have := map[string]bool{}
		for _, f := range got {
			have[netnstest.FlowKey(f)] = true
		}
		var missing []string
		for _, w := range want {
			if !have[w] {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			var ids []string
			for _, f := range got {
				ids = append(ids, netnstest.FlowKey(f))
			}
			t.Fatalf("records missing after a minute:\n  %s\nhave:\n  %s", strings.Join(missing, "\n  "), strings.Join(ids, "\n  "))
		}
		time.Sleep(100 * time.Millisecond) // polling for the kernel's records, with a deadline
	}
}

// flowProbe is a probe and the records it must yield.
type flowProbe struct {
	probe   netnstest.Probe
	through bool
	records []string
}

// FlowProbes are probes of every kind, allowed and denied, between
// environments and to and from the internet, each with its records.
func flowProbes(l *lab, a, a6, b netnstest.Endpoint) []flowProbe {
	in := l.inetEnd
	rec := func(env, dir, verdict, proto, src, dst string, port int, pol string, rule int) string {
		f := apiv1.Flow{EnvironmentID: env, Direction: dir, Verdict: verdict, Protocol: proto, SrcAddress: src, DstAddress: dst, DstPort: port, PolicyID: pol}
		if rule >= 0 {
			f.Rule = &rule
		}
		return netnstest.FlowKey(f)
	}
	const A, B, allowed, denied = "env-a", "env-b", apiv1.VerdictAllowed, apiv1.VerdictDenied
	eg, ig := apiv1.Egress, apiv1.Ingress
	return []flowProbe{
		{probe("tcp", a, in("198.19.0.10"), 80), true, []string{rec(A, eg, allowed, "tcp", "198.18.0.2", "198.19.0.10", 80, "pa", 0)}},
		{probe("udp", a, in("198.19.0.10"), 1000), true, []string{rec(A, eg, allowed, "udp", "198.18.0.2", "198.19.0.10", 1000, "pa", 0)}},
		{probe("icmp", a, in("198.19.0.200"), 0), true, []string{rec(A, eg, allowed, "icmp", "198.18.0.2", "198.19.0.200", 0, "pa", 1)}},
		{probe("tcp", a, b, 443), true, []string{
			rec(A, eg, allowed, "tcp", "198.18.0.2", "198.18.0.3", 443, "pa", 2),
			rec(B, ig, allowed, "tcp", "198.18.0.2", "198.18.0.3", 443, "pb", 0),
		}},
		{probe("tcp", in("198.19.1.77"), a, 5432), true, []string{rec(A, ig, allowed, "tcp", "198.19.1.77", "198.18.0.2", 5432, "pa-in", 0)}},
		{probe("tcp", a, in("198.19.0.10"), 22), false, []string{rec(A, eg, denied, "tcp", "198.18.0.2", "198.19.0.10", 22, "", -1)}},
		{probe("udp", a, in("198.19.0.10"), 1001), false, []string{rec(A, eg, denied, "udp", "198.18.0.2", "198.19.0.10", 1001, "", -1)}},
		{probe("icmp", a, in("198.19.1.10"), 0), false, []string{rec(A, eg, denied, "icmp", "198.18.0.2", "198.19.1.10", 0, "", -1)}},
		{probe("tcp", a, b, 8080), false, []string{rec(B, ig, denied, "tcp", "198.18.0.2", "198.18.0.3", 8080, "", -1)}},
		{probe("tcp", in("198.19.2.5"), a, 5432), false, []string{rec(A, ig, denied, "tcp", "198.19.2.5", "198.18.0.2", 5432, "", -1)}},
		{probe("udp", in("198.19.0.10"), a, 1009), false, []string{rec(A, ig, denied, "udp", "198.19.0.10", "198.18.0.2", 1009, "", -1)}},
		{probe("tcp", a6, in("fd00:198:19::10"), 443), false, []string{rec(A, eg, denied, "tcp", a6.Addr.String(), "fd00:198:19::10", 443, "", -1)}},
		{probe("tcp", a6, in("fd00:198:19::8:1"), 443), true, []string{rec(A, eg, allowed, "tcp", a6.Addr.String(), "fd00:198:19::8:1", 443, "pa", 3)}},
	}
}

// flowPolicies are the rules flowProbes' records name.
func flowPolicies(t testing.TB, l *lab) {
	l.apply(t, "env-a", apiv1.EffectivePolicy{
		Ingress: []apiv1.EffectiveRule{rule("pa-in", []apiv1.EffectivePeer{cidr("198.19.1.0/24")}, tcp(5432))},
		Egress: indexed(
			rule("pa", []apiv1.EffectivePeer{cidr("198.19.0.10/32")}, tcp(80), udp(1000)),
			rule("pa", []apiv1.EffectivePeer{cidr("198.19.0.200/32")}, icmpAny()),
			rule("pa", []apiv1.EffectivePeer{envPeer("198.18.0.3")}, tcp(443), tcp(8080)),
			rule("pa", []apiv1.EffectivePeer{cidr("fd00:198:19::8:0/112")}, tcp(443)),
		),
	})
	l.apply(t, "env-b", apiv1.EffectivePolicy{Ingress: []apiv1.EffectiveRule{rule("pb", []apiv1.EffectivePeer{envPeer("198.18.0.2")}, tcp(443))}})
}

// indexed numbers rules as one policy's.
func indexed(rules ...apiv1.EffectiveRule) []apiv1.EffectiveRule {
	for i := range rules {
		rules[i].RuleIndex = i
	}
	return rules
}

// TestFlowLogs_EveryProbeIsOneRecord sends probes of every kind, allowed
// and denied, and checks that each yields exactly its records, with the
// rule that allowed it.
func TestFlowLogs_EveryProbeIsOneRecord(t *testing.T) {
	l := newLab(t)
	sink := startFlows(t, l.d)
	a, a6 := l.env(t, "env-a", "198.18.0.2")
	b, _ := l.env(t, "env-b", "198.18.0.3")
	flowPolicies(t, l)
	var want []string
	for _, fp := range flowProbes(l, a, a6, b) {
		if got := send(t, fp.probe); got != fp.through {
			t.Fatalf("%s: through = %v, want %v", fp.probe, got, fp.through)
		}
		want = append(want, fp.records...)
	}
	got := waitFlows(t, sink.all, want)
	// One to one: no probe's record twice, and nothing else.
	counts := map[string]int{}
	for _, f := range got {
		counts[netnstest.FlowKey(f)]++
		if f.Time.IsZero() || f.FirstSeen.IsZero() || f.LastSeen.Before(f.FirstSeen) || f.Count < 1 {
			t.Errorf("%s: times or count missing: %+v", netnstest.FlowKey(f), f)
		}
		if f.Verdict == apiv1.VerdictAllowed && (f.Packets < 2 || f.Bytes == 0 || f.Count != 1) {
			t.Errorf("%s: an allowed probe's record has %d packets, %d bytes, count %d", netnstest.FlowKey(f), f.Packets, f.Bytes, f.Count)
		}
		if f.Protocol == apiv1.ProtocolTCP && f.Verdict == apiv1.VerdictAllowed && f.SrcPort == 0 {
			t.Errorf("%s: no source port", netnstest.FlowKey(f))
		}
	}
	for id, n := range counts {
		if !slices.Contains(want, id) {
			t.Errorf("unexpected record %s", id)
		} else if n != 1 {
			t.Errorf("%s: %d records, want 1", id, n)
		}
	}
}

// TestFlowLogs_ScanIsSummarisedAndCountsAddUp sends a port scan: more
// ports of one peer in a second than records list one by one.
func TestFlowLogs_ScanIsSummarisedAndCountsAddUp(t *testing.T) {
	l := newLab(t)
	sink := startFlows(t, l.d)
	a, _ := l.env(t, "env-a", "198.18.0.2")
	const ports = 200
	sent := 0
	for port := 2000; port < 2000+ports; port++ {
		netnstest.SendUDP(t, a, l.inetEnd("198.19.0.10"), port, 1)
		sent++
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var total int64
		for _, f := range sink.all() {
			if f.EnvironmentID == "env-a" && f.Verdict == apiv1.VerdictDenied {
				total += f.Count
			}
		}
		if total == int64(sent) {
			break
		}
		if total > int64(sent) || time.Now().After(deadline) {
			t.Fatalf("denied count %d, want %d", total, sent)
		}
		time.Sleep(100 * time.Millisecond) // polling for the kernel's counts, with a deadline
	}
	recs := sink.all()
	if len(recs) > ports/apiv1.MaxFlowPortsPerPeer+5 {
		t.Errorf("a scan of %d ports is %d records; want it summarised", ports, len(recs))
	}
}

// TestFlowLogs_LeaveNoDeniedSetSocketOrGoroutineBehind fills an
// environment's sets of denied peers, tears it down, and turns flow logs
// off: the sets and counters go with the environment, and the conntrack
// and nftables sockets and the goroutines go with the flow logs.
func TestFlowLogs_LeaveNoDeniedSetSocketOrGoroutineBehind(t *testing.T) {
	l := newLab(t)
	router := l.d.RouterNamespace()
	sockets := netnstest.NetlinkSockets(t, router, unix.NETLINK_NETFILTER)
	sink := startFlows(t, l.d)
	// nftables for the sets, conntrack for the reaping dumps and for events.
	if n := netnstest.NetlinkSockets(t, router, unix.NETLINK_NETFILTER); n != sockets+3 {
		t.Errorf("flow logs on: %d netfilter sockets in the router namespace, want %d and the flow log's 3", n, sockets)
	}
	a, _ := l.env(t, "env-a", "198.18.0.2")
	const denied = 10
	netnstest.SendUDP(t, a, l.inetEnd("198.19.0.10"), 3000, denied)
	deadline := time.Now().Add(time.Minute)
	for total := int64(0); total < denied; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d denied packets recorded after a minute", total, denied)
		}
		time.Sleep(100 * time.Millisecond) // polling for the kernel's counts, with a deadline
		total = 0
		for _, f := range sink.all() {
			total += f.Count
		}
	}
	ns := l.d.Namespace("env-a")
	want := []string{
		"counter " + ns + "_denied_in", "counter " + ns + "_denied_out",
		"set " + ns + "_denied_in_v4", "set " + ns + "_denied_in_v6", "set " + ns + "_denied_out_v4 (1 elements)", "set " + ns + "_denied_out_v6",
	}
	if got := deniedObjects(t, l, ns); !slices.Equal(got, want) {
		t.Fatalf("env-a's denied sets and counters:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if err := l.d.Teardown(context.Background(), "env-a"); err != nil {
		t.Fatal(err)
	}
	if got := deniedObjects(t, l, ns); len(got) > 0 {
		t.Errorf("after teardown: %s", strings.Join(got, "; "))
	}
	netns.StopFlowLogs(l.d)
	if n := netnstest.NetlinkSockets(t, router, unix.NETLINK_NETFILTER); n != sockets {
		t.Errorf("flow logs off: %d netfilter sockets in the router namespace, want the %d before", n, sockets)
	}
	if n := netnstest.Goroutines("netns.(*flowLog)", "ti-mo/conntrack"); n > 0 {
		t.Errorf("flow logs off: %d of their goroutines still run", n)
	}
}

// deniedObjects lists, sorted, the counters and sets of the router's inet
// table named after the environment namespace ns, sets with how many
// elements they hold when any.
func deniedObjects(t *testing.T, l *lab, ns string) []string {
	t.Helper()
	// Not a lasting connection: one socket for each request, closed after
	// it, so that the count of sockets is the driver's alone.
	h, err := vnetns.GetFromName(l.d.RouterNamespace())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, table := range tables {
		if table.Family != nftables.TableFamilyINet || !strings.HasPrefix(table.Name, l.prefix) {
			continue
		}
		objs, err := c.GetObjects(table)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if co, ok := o.(*nftables.CounterObj); ok && strings.HasPrefix(co.Name, ns+"_") {
				out = append(out, "counter "+co.Name)
			}
		}
		sets, err := c.GetSets(table)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sets {
			if !strings.HasPrefix(s.Name, ns+"_denied") {
				continue
			}
			elems, err := c.GetSetElements(s)
			if err != nil {
				t.Fatal(err)
			}
			name := "set " + s.Name
			if len(elems) > 0 {
				name += fmt.Sprintf(" (%d elements)", len(elems))
			}
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestFlowLogs_RestartedCountOnlyNewDeniedPackets turns flow logs off and
// on again (as a restart of isolationd does): the kernel's denied
// counters keep what they counted, and the new run reports only what
// comes after it starts.
func TestFlowLogs_RestartedCountOnlyNewDeniedPackets(t *testing.T) {
	l := newLab(t)
	first := startFlows(t, l.d)
	a, _ := l.env(t, "env-a", "198.18.0.2")
	deniedCount := func(s *flowSink) (n int64) {
		for _, f := range s.all() {
			if f.Verdict == apiv1.VerdictDenied {
				n += f.Count
			}
		}
		return n
	}
	waitCount := func(s *flowSink, want int64) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for n := deniedCount(s); n != want; n = deniedCount(s) {
			if n > want || time.Now().After(deadline) {
				t.Fatalf("denied count %d, want %d", n, want)
			}
			time.Sleep(100 * time.Millisecond) // polling for the kernel's counts, with a deadline
		}
	}
	netnstest.SendUDP(t, a, l.inetEnd("198.19.0.10"), 3000, 5)
	waitCount(first, 5)
	netns.StopFlowLogs(l.d)

	second := &flowSink{}
	if err := l.d.StartFlowLogs(second.add); err != nil {
		t.Fatal(err)
	}
	netnstest.SendUDP(t, a, l.inetEnd("198.19.0.10"), 3000, 3)
	netnstest.SendUDP(t, a, l.inetEnd("198.19.0.10"), 3001, 2)
	waitCount(second, 5)
	// A poll more, in which nothing from before may turn up.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if n := deniedCount(second); n != 5 {
			t.Fatalf("the second run counts %d denied packets, want the 5 sent after it started", n)
		}
		time.Sleep(100 * time.Millisecond) // watching for late records, with a deadline
	}
}
