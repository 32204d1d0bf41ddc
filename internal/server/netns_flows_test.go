package server_test

// Flow logs through the API: real probes and a real flood from the
// environments' namespaces, read back with GET /v1/environments/{id}/flows
// and GET /v1/flows.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/server"
)

// flowLab is a netns server with flow logs, network-only environments a
// and b, an internet, and conntrack forgetting closed flows at once (so
// that allowed flows' records, written when the kernel forgets them,
// come in a test's time).
type flowLab struct {
	*apiLab
	a, b   apiv1.Environment
	pa, pb apiv1.Policy
}

func startFlowLab(t *testing.T, tune func(*server.Config)) *flowLab {
	cfg := labConfig(t, netns.DriverName)
	cfg.Runtime = apiv1.RuntimeNone
	if tune != nil {
		tune(&cfg)
	}
	l := &flowLab{apiLab: startLab(t, cfg)}
	l.internet()
	netnstest.ShortConntrackTimeouts(t, l.driver().RouterNamespace())
	l.a = l.createEnv("a", map[string]string{"app": "a"})
	l.b = l.createEnv("b", map[string]string{"app": "b"})
	for _, e := range []apiv1.Environment{l.a, l.b} {
		netnstest.Serve(t, e.Enforcement.Namespace, probePorts)
	}
	peer := func(c string) apiv1.Peer { return apiv1.Peer{CIDR: c} }
	app := func(v string) apiv1.Peer {
		return apiv1.Peer{EnvironmentSelector: &apiv1.Selector{MatchLabels: map[string]string{"app": v}}}
	}
	l.pa = l.createPolicy(apiv1.PolicySpec{
		Name: "pa", EnvironmentSelector: selector(map[string]string{"app": "a"}), PolicyTypes: []string{apiv1.Ingress, apiv1.Egress},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{peer("198.19.1.0/24")}, Ports: []apiv1.Port{tcpPort(5432)}}},
		Egress: []apiv1.EgressRule{
			{To: []apiv1.Peer{peer("198.19.0.10/32")}, Ports: []apiv1.Port{tcpPort(80), {Protocol: apiv1.ProtocolUDP, Port: ptr(1000)}}},
			{To: []apiv1.Peer{peer("198.19.0.200/32")}, Ports: []apiv1.Port{{Protocol: apiv1.ProtocolICMP}}},
			{To: []apiv1.Peer{app("b")}, Ports: []apiv1.Port{tcpPort(443), tcpPort(8080)}},
		},
	})
	l.pb = l.createPolicy(apiv1.PolicySpec{
		Name: "pb", EnvironmentSelector: selector(map[string]string{"app": "b"}), PolicyTypes: []string{apiv1.Ingress},
		Ingress: []apiv1.IngressRule{{From: []apiv1.Peer{app("a")}, Ports: []apiv1.Port{tcpPort(443)}}},
	})
	l.mustEnforce([]apiv1.Environment{l.a, l.b})
	return l
}

// probes sends probes of every kind and returns the records they must
// yield.
func (l *flowLab) probes(t *testing.T) []string {
	a, b := l.ends(l.a), l.ends(l.b)
	in := func(addr string) netnstest.Endpoint {
		return netnstest.Endpoint{Namespace: l.cfg.NetnsPrefix + "-internet", Addr: netip.MustParseAddr(addr)}
	}
	rec := func(env apiv1.Environment, dir, verdict, proto string, src, dst netnstest.Endpoint, port int, pol string, rule int) string {
		f := apiv1.Flow{EnvironmentID: env.ID, Direction: dir, Verdict: verdict, Protocol: proto, SrcAddress: src.Addr.String(), DstAddress: dst.Addr.String(), DstPort: port, PolicyID: pol}
		if rule >= 0 {
			f.Rule = &rule
		}
		return netnstest.FlowKey(f)
	}
	const allowed, denied = apiv1.VerdictAllowed, apiv1.VerdictDenied
	eg, ig := apiv1.Egress, apiv1.Ingress
	cases := []struct {
		probe   netnstest.Probe
		through bool
		records []string
	}{
		{probe("tcp", a[0], in("198.19.0.10"), 80), true, []string{rec(l.a, eg, allowed, "tcp", a[0], in("198.19.0.10"), 80, l.pa.ID, 0)}},
		{probe("udp", a[0], in("198.19.0.10"), 1000), true, []string{rec(l.a, eg, allowed, "udp", a[0], in("198.19.0.10"), 1000, l.pa.ID, 0)}},
		{probe("icmp", a[0], in("198.19.0.200"), 0), true, []string{rec(l.a, eg, allowed, "icmp", a[0], in("198.19.0.200"), 0, l.pa.ID, 1)}},
		{probe("tcp", a[0], b[0], 443), true, []string{
			rec(l.a, eg, allowed, "tcp", a[0], b[0], 443, l.pa.ID, 2),
			rec(l.b, ig, allowed, "tcp", a[0], b[0], 443, l.pb.ID, 0),
		}},
		{probe("tcp", in("198.19.1.77"), a[0], 5432), true, []string{rec(l.a, ig, allowed, "tcp", in("198.19.1.77"), a[0], 5432, l.pa.ID, 0)}},
		{probe("tcp", a[0], in("198.19.0.10"), 22), false, []string{rec(l.a, eg, denied, "tcp", a[0], in("198.19.0.10"), 22, "", -1)}},
		{probe("udp", a[0], in("198.19.0.10"), 1005), false, []string{rec(l.a, eg, denied, "udp", a[0], in("198.19.0.10"), 1005, "", -1)}},
		{probe("icmp", a[0], in("198.19.1.10"), 0), false, []string{rec(l.a, eg, denied, "icmp", a[0], in("198.19.1.10"), 0, "", -1)}},
		{probe("tcp", a[0], b[0], 8080), false, []string{rec(l.b, ig, denied, "tcp", a[0], b[0], 8080, "", -1)}},
		{probe("tcp", in("198.19.200.9"), a[0], 5432), false, []string{rec(l.a, ig, denied, "tcp", in("198.19.200.9"), a[0], 5432, "", -1)}},
		{probe("udp", in("198.19.0.10"), b[0], 1010), false, []string{rec(l.b, ig, denied, "udp", in("198.19.0.10"), b[0], 1010, "", -1)}},
		{probe("tcp", a[1], in("fd00:198:19::10"), 443), false, []string{rec(l.a, eg, denied, "tcp", a[1], in("fd00:198:19::10"), 443, "", -1)}},
	}
	var want []string
	for _, c := range cases {
		got, err := netnstest.Send(l.ctx, c.probe, denyTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.through {
			t.Fatalf("%s: through = %v, want %v", c.probe, got, c.through)
		}
		want = append(want, c.records...)
	}
	return want
}

func probe(proto string, from, to netnstest.Endpoint, port int) netnstest.Probe {
	return netnstest.Probe{From: from, To: to, Protocol: proto, Port: port}
}

// envFlows lists every record of the lab's environments through GET
// /v1/environments/{id}/flows.
func (l *flowLab) envFlows(t *testing.T, opts client.FlowListOptions) []apiv1.Flow {
	t.Helper()
	var out []apiv1.Flow
	for _, e := range []apiv1.Environment{l.a, l.b} {
		fs, err := l.c.Flows().ListEnvironment(l.ctx, e.ID, opts)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fs...)
	}
	return out
}

// waitFor polls list, for at most a minute, until done says its records
// are complete.
func waitFor(t *testing.T, what string, list func() []apiv1.Flow, done func([]apiv1.Flow) bool) []apiv1.Flow {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := list()
		if done(got) {
			return got
		}
		if time.Now().After(deadline) {
			var keys []string
			for _, f := range got {
				keys = append(keys, netnstest.FlowKey(f))
			}
			t.Fatalf("%s: not within a minute; records:\n  %s", what, strings.Join(keys, "\n  "))
		}
		time.Sleep(100 * time.Millisecond) // polling the API for the kernel's records, with a deadline
	}
}

func keys(fs []apiv1.Flow) map[string]int {
	out := map[string]int{}
	for _, f := range fs {
		out[netnstest.FlowKey(f)]++
	}
	return out
}

// Probes of every kind, allowed and denied, between environments and to
// and from the internet, are flow records one to one, with the policy and
// rule that allowed each; the filters, pages and scopes of the API select
// them as they say.
func TestNetnsAPI_FlowRecordsMatchProbesOneToOne(t *testing.T) {
	l := startFlowLab(t, nil)
	want := l.probes(t)
	got := waitFor(t, "every probe's record", func() []apiv1.Flow { return l.envFlows(t, client.FlowListOptions{}) }, func(fs []apiv1.Flow) bool {
		have := keys(fs)
		return !slices.ContainsFunc(want, func(w string) bool { return have[w] == 0 })
	})
	for k, n := range keys(got) {
		switch {
		case !slices.Contains(want, k):
			t.Errorf("a record no probe made: %s", k)
		case n != 1:
			t.Errorf("%s: %d records, want 1", k, n)
		}
	}
	for _, f := range got {
		if f.ProjectID != l.project.ID || f.ID == 0 || f.Count < 1 {
			t.Errorf("%s: project %q, id %d, count %d", netnstest.FlowKey(f), f.ProjectID, f.ID, f.Count)
		}
	}

	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			opts client.FlowListOptions
			keep func(apiv1.Flow) bool
		}{
			{client.FlowListOptions{Verdict: apiv1.VerdictDenied}, func(f apiv1.Flow) bool { return f.Verdict == apiv1.VerdictDenied }},
			{client.FlowListOptions{Direction: apiv1.Ingress}, func(f apiv1.Flow) bool { return f.Direction == apiv1.Ingress }},
			{client.FlowListOptions{Peer: "198.19.0.10"}, func(f apiv1.Flow) bool { return f.SrcAddress == "198.19.0.10" || f.DstAddress == "198.19.0.10" }},
			{client.FlowListOptions{Since: time.Now().Add(time.Hour)}, func(apiv1.Flow) bool { return false }},
			{client.FlowListOptions{Until: time.Now().Add(-time.Hour)}, func(apiv1.Flow) bool { return false }},
		} {
			var wantKeys []string
			for _, f := range got {
				if tc.keep(f) {
					wantKeys = append(wantKeys, netnstest.FlowKey(f))
				}
			}
			var gotKeys []string
			for _, f := range l.envFlows(t, tc.opts) {
				gotKeys = append(gotKeys, netnstest.FlowKey(f))
			}
			slices.Sort(wantKeys)
			slices.Sort(gotKeys)
			if !slices.Equal(gotKeys, wantKeys) {
				t.Errorf("%+v: got\n  %s\nwant\n  %s", tc.opts, strings.Join(gotKeys, "\n  "), strings.Join(wantKeys, "\n  "))
			}
		}
		_, err := l.c.Flows().List(l.ctx, client.FlowListOptions{Verdict: "dropped"})
		if client.StatusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "verdict") {
			t.Errorf("verdict=dropped: %v, want a 400 naming verdict", err)
		}
	})

	t.Run("pages", func(t *testing.T) {
		all, err := l.c.Flows().List(l.ctx, client.FlowListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var paged []apiv1.Flow
		after := int64(0)
		for range len(all) + 1 {
			page, next, err := l.c.Flows().Page(l.ctx, "", client.FlowListOptions{Limit: 2}, after)
			if err != nil {
				t.Fatal(err)
			}
			paged = append(paged, page...)
			if next == 0 {
				break
			}
			after = next
		}
		if len(paged) < len(all) || len(all) < len(want) {
			t.Fatalf("pages of 2 hold %d records, the list %d, the probes made %d", len(paged), len(all), len(want))
		}
		for i := range all {
			if paged[i].ID != all[i].ID || i > 0 && all[i].ID <= all[i-1].ID {
				t.Fatalf("record %d: paged id %d, listed id %d; ids must grow", i, paged[i].ID, all[i].ID)
			}
		}
	})

	t.Run("scope", func(t *testing.T) {
		other, err := l.c.Projects().Create(l.ctx, apiv1.ProjectCreate{Name: "other"})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := l.c.Tokens().Create(l.ctx, apiv1.TokenCreate{Name: "other-viewer", Role: apiv1.RoleViewer, ProjectID: other.ID})
		if err != nil {
			t.Fatal(err)
		}
		oc, err := client.New(client.Config{Endpoint: l.srv.URL(), Token: tok.Secret})
		if err != nil {
			t.Fatal(err)
		}
		if fs, err := oc.Flows().List(l.ctx, client.FlowListOptions{}); err != nil || len(fs) != 0 {
			t.Errorf("another project's viewer lists %d records (err %v), want none", len(fs), err)
		}
		_, err = oc.Flows().ListEnvironment(l.ctx, l.a.ID, client.FlowListOptions{})
		if client.StatusCode(err) != http.StatusNotFound {
			t.Errorf("another project's viewer reads env a's records: %v, want 404", err)
		}
		_, err = oc.Flows().List(l.ctx, client.FlowListOptions{ProjectID: l.project.ID})
		if client.StatusCode(err) != http.StatusNotFound {
			t.Errorf("another project's viewer lists project %s's records: %v, want 404", l.project.ID, err)
		}
		mine, err := l.c.Tokens().Create(l.ctx, apiv1.TokenCreate{Name: "viewer", Role: apiv1.RoleViewer, ProjectID: l.project.ID})
		if err != nil {
			t.Fatal(err)
		}
		mc, err := client.New(client.Config{Endpoint: l.srv.URL(), Token: mine.Secret})
		if err != nil {
			t.Fatal(err)
		}
		if fs, err := mc.Flows().List(l.ctx, client.FlowListOptions{}); err != nil || len(fs) < len(want) {
			t.Errorf("the project's viewer lists %d records (err %v), want at least %d", len(fs), err, len(want))
		}
	})
}

// A flood of 100,000 denied packets, to more ports than the kernel's set
// of denied peers holds, is a few aggregated records whose counts add up
// to what was sent (within 1%: what the namespaces' own queues drop never
// reaches the rules), and the API answers quickly throughout.
func TestNetnsAPI_FloodOfDeniedPacketsAddsUpAndTheAPIStaysResponsive(t *testing.T) {
	l := startFlowLab(t, nil)
	const packets, ports = 100_000, 10_000
	a := l.ends(l.a)[0]
	inet := netnstest.Endpoint{Namespace: l.cfg.NetnsPrefix + "-internet", Addr: netip.MustParseAddr("198.19.0.10")}

	// A reader calls the API every 10 ms, at most maxCalls times, from
	// the flood's start until its records are in, timing every answer and
	// noting which started while packets were still being sent.
	const maxCalls = 1000
	var (
		mu      sync.Mutex
		took    []time.Duration // of the calls that started during the flood
		after   int             // calls after it, while its records came in
		sending = true
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range maxCalls {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			during := sending
			mu.Unlock()
			start := time.Now()
			ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
			_, _, err := l.c.Flows().Page(ctx, l.a.ID, client.FlowListOptions{Verdict: apiv1.VerdictDenied, Limit: 100}, 0)
			if err == nil {
				_, err = l.c.Environments().Get(ctx, l.a.ID)
			}
			cancel()
			if err != nil {
				t.Errorf("the API during the flood: %v", err)
			}
			mu.Lock()
			if during {
				took = append(took, time.Since(start))
			} else {
				after++
			}
			mu.Unlock()
		}
	})

	began := time.Now()
	for i := range ports {
		netnstest.SendUDP(t, a, inet, 20000+i, packets/ports)
	}
	mu.Lock()
	sending = false
	mu.Unlock()
	flood := time.Since(began)
	sum := func(fs []apiv1.Flow) (n int64) {
		for _, f := range fs {
			n += f.Count
		}
		return n
	}
	got := waitFor(t, "the flood's counts", func() []apiv1.Flow {
		fs, err := l.c.Flows().ListEnvironment(l.ctx, l.a.ID, client.FlowListOptions{Verdict: apiv1.VerdictDenied})
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}, func(fs []apiv1.Flow) bool { return sum(fs) >= packets*99/100 })
	close(stop)
	wg.Wait()
	total := sum(got)
	slices.Sort(took)
	if len(took) < 10 {
		t.Fatalf("only %d API calls during a flood of %v", len(took), flood)
	}
	p50, p99, slowest := took[len(took)/2], took[len(took)*99/100], took[len(took)-1]
	t.Logf("%d packets to %d ports in %v: %d records counting %d; %d API calls (a page of flows and an environment) during the flood: p50 %v, p99 %v, slowest %v; %d more after it",
		packets, ports, flood.Round(time.Millisecond), len(got), total, len(took), p50, p99, slowest, after)
	if total > packets {
		t.Errorf("the records count %d packets, more than the %d sent", total, packets)
	}
	if len(got) > 100 {
		t.Errorf("%d records for one flood: want it aggregated", len(got))
	}
	if slowest > 2*time.Second {
		t.Errorf("the slowest API answer during the flood took %v, want under 2s", slowest)
	}
	// Prometheus counts what the records count.
	for _, series := range []string{
		fmt.Sprintf("isolationd_flows_total{environment=%q,verdict=%q}", l.a.ID, apiv1.VerdictDenied),
		fmt.Sprintf("isolationd_flow_denied_packets_total{environment=%q}", l.a.ID),
	} {
		if got := l.metric(t, series, float64(total)); got > packets {
			t.Errorf("%s = %v, more than the %d sent", series, got, packets)
		}
	}
}

// metric reads one series of /metrics, polling for at most five seconds
// until it is at least least: the counters move right after the records
// are stored.
func (l *flowLab) metric(t *testing.T, series string, least float64) float64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(l.metrics(t), "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				if n >= least {
					return n
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no %s of at least %v after five seconds", series, least)
		}
		time.Sleep(50 * time.Millisecond) // polling for the counters, with a deadline
	}
}

// metrics is the server's /metrics, read with the admin token.
func (l *apiLab) metrics(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequestWithContext(l.ctx, http.MethodGet, l.srv.URL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+l.srv.AdminToken())
	resp, err := l.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s, %v", resp.Status, err)
	}
	return string(body)
}

// Flow records older than --flow-retention, and beyond
// --flow-max-records, are pruned; the server's clock is the test's, which
// moves past the retention and to the next pruning without a wait.
func TestNetnsAPI_FlowRecordsArePrunedToTheRetention(t *testing.T) {
	t.Run("age", func(t *testing.T) {
		clock := newFakeClock()
		l := startFlowLab(t, func(c *server.Config) { c.FlowRetention, c.Clock = time.Minute, clock })
		want := l.probes(t)
		list := func() []apiv1.Flow { return l.envFlows(t, client.FlowListOptions{}) }
		waitFor(t, "every probe's record", list, func(fs []apiv1.Flow) bool { return len(fs) >= len(want) })
		clock.Advance(2 * time.Minute)
		waitFor(t, "records pruned a minute after their time", list, func(fs []apiv1.Flow) bool { return len(fs) == 0 })
	})
	t.Run("count", func(t *testing.T) {
		clock := newFakeClock()
		l := startFlowLab(t, func(c *server.Config) { c.FlowMaxRecords, c.Clock = 3, clock })
		want := l.probes(t)
		list := func() []apiv1.Flow {
			fs, err := l.c.Flows().List(l.ctx, client.FlowListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return fs
		}
		all := waitFor(t, "every probe's record", list, func(fs []apiv1.Flow) bool { return len(fs) >= len(want) })
		newest := all[len(all)-1].ID
		clock.Advance(time.Minute)
		waitFor(t, "only the newest 3 records", list, func(fs []apiv1.Flow) bool {
			return len(fs) == 3 && fs[0].ID == newest-2 && fs[2].ID == newest
		})
	})
}

// Flow logs end with the server: its Shutdown hands the last second's
// records to the store, and leaves no netfilter socket of the process in
// the router namespace (conntrack's and nftables') and no goroutine of
// the flow logs. The next start reads those last records.
func TestNetnsAPI_ShutdownStoresTheLastFlowsAndLeavesNoSocketOrGoroutine(t *testing.T) {
	l := startFlowLab(t, nil)
	router := l.driver().RouterNamespace()
	if n := netnstest.NetlinkSockets(t, router, unix.NETLINK_NETFILTER); n < 3 {
		t.Errorf("flow logs on: %d netfilter sockets in the router namespace, want at least the flow log's 3", n)
	}
	a := l.ends(l.a)[0]
	inet := netnstest.Endpoint{Namespace: l.cfg.NetnsPrefix + "-internet", Addr: netip.MustParseAddr("198.19.0.10")}
	const last = 7
	netnstest.SendUDP(t, a, inet, 4000, last)
	l.shutdown()
	if n := netnstest.NetlinkSockets(t, router, unix.NETLINK_NETFILTER); n != 0 {
		t.Errorf("after Shutdown: %d netfilter sockets of the process in the router namespace, want none", n)
	}
	if n := netnstest.Goroutines("netns.(*flowLog)", "server.(*flowLogs)", "ti-mo/conntrack"); n > 0 {
		t.Errorf("after Shutdown: %d goroutines of the flow logs still run", n)
	}
	l.start()
	fs, err := l.c.Flows().ListEnvironment(l.ctx, l.a.ID, client.FlowListOptions{Verdict: apiv1.VerdictDenied})
	if err != nil {
		t.Fatal(err)
	}
	want := netnstest.FlowKey(apiv1.Flow{EnvironmentID: l.a.ID, Direction: apiv1.Egress, Verdict: apiv1.VerdictDenied, Protocol: apiv1.ProtocolUDP,
		SrcAddress: a.Addr.String(), DstAddress: inet.Addr.String(), DstPort: 4000})
	if len(fs) != 1 || netnstest.FlowKey(fs[0]) != want || fs[0].Count != last {
		var got []string
		for _, f := range fs {
			got = append(got, fmt.Sprintf("%s count %d", netnstest.FlowKey(f), f.Count))
		}
		t.Errorf("after a restart: denied records\n  %s\nwant %s count %d", strings.Join(got, "\n  "), want, last)
	}
}
