package server_test

// Kernel drift, proven through the API: what an operator (or an attacker
// with root on the host) does to an environment's kernel objects behind
// isolationd's back is seen within a second, reported as not enforced
// with the reason, repaired, and audited.

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
)

// repairDeadline is how long detection and repair may take together.
const repairDeadline = 5 * time.Second

// watchAll streams every version of environment id that
// GET /v1/environments/{id}/watch sends, until ctx ends.
func (l *apiLab) watchAll(ctx context.Context, id string) <-chan apiv1.Environment {
	l.tb.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.srv.URL()+"/v1/environments/"+url.PathEscape(id)+"/watch", nil)
	if err != nil {
		l.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+l.srv.AdminToken())
	resp, err := l.http.Do(req)
	if err != nil {
		l.tb.Fatal(err)
	}
	out := make(chan apiv1.Environment, 64)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e apiv1.Environment
			if json.Unmarshal([]byte(data), &e) == nil {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// next waits, until deadline, for a version of the environment that
// satisfies cond.
func next(t *testing.T, versions <-chan apiv1.Environment, deadline time.Time, what string, cond func(apiv1.Environment) bool) apiv1.Environment {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var last apiv1.Environment
	for {
		select {
		case e, ok := <-versions:
			if !ok {
				t.Fatalf("the watch ended before the environment was %s; last: %+v", what, last.Enforcement)
			}
			if last = e; cond(e) {
				return e
			}
		case <-timer.C:
			t.Fatalf("the environment was not %s within %v of the drift; last: %+v", what, repairDeadline, last.Enforcement)
		}
	}
}

// inRouter runs fn with an nftables connection and a netlink handle on
// the server's router namespace.
func (l *apiLab) inRouter(fn func(c *nftables.Conn, nl *netlink.Handle) error) {
	l.tb.Helper()
	h, err := vnetns.GetFromName(l.driver().RouterNamespace())
	if err != nil {
		l.tb.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		l.tb.Fatal(err)
	}
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		l.tb.Fatal(err)
	}
	defer nl.Close()
	if err := fn(c, nl); err != nil {
		l.tb.Fatal(err)
	}
}

// Each kind of drift is seen and repaired within repairDeadline: the
// environment reads enforced false, with the reason, until it is
// repaired; real packets follow the policy again afterwards; and the
// drift and its repair are on the audit trail.
func TestNetnsAPI_KernelDriftIsDetectedReportedAndRepaired(t *testing.T) {
	cfg := labConfig(t, netns.DriverName)
	// The reconciler's warnings say what it saw, when the test fails.
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	l := startLab(t, cfg)
	l.internet()
	env := l.createEnv("drifting", map[string]string{"app": "drift"})
	l.createPolicy(apiv1.PolicySpec{
		Name: "web-out", EnvironmentSelector: selector(map[string]string{"app": "drift"}), PolicyTypes: []string{apiv1.Egress},
		Egress: []apiv1.EgressRule{{To: []apiv1.Peer{{CIDR: "198.19.0.10/32"}}, Ports: []apiv1.Port{tcpPort(80)}}},
	})
	env = l.mustEnforce([]apiv1.Environment{env})[0]
	web := netnstest.Endpoint{Namespace: l.cfg.NetnsPrefix + "-internet", Addr: inetHosts[0]}
	enforcedByPackets := func(when string) {
		t.Helper()
		from := l.ends(env)[0]
		allowed := netnstest.Probe{From: from, To: web, Protocol: apiv1.ProtocolTCP, Port: 80}
		denied := netnstest.Probe{From: from, To: web, Protocol: apiv1.ProtocolTCP, Port: 443}
		if ok, err := netnstest.Send(l.ctx, allowed, 2*time.Second); err != nil || !ok {
			t.Fatalf("%s: %s: connected=%v err=%v; the policy allows it", when, allowed, ok, err)
		}
		if ok, err := netnstest.Send(l.ctx, denied, denyTimeout); err != nil || ok {
			t.Fatalf("%s: %s: connected=%v err=%v; the policy denies it", when, denied, ok, err)
		}
	}
	enforcedByPackets("before any drift")

	table := l.cfg.NetnsPrefix
	ns := env.Enforcement.Namespace
	drifts := []struct {
		name, reason string
		do           func()
	}{
		{"namespace deleted", "namespace deleted outside isolationd", func() {
			if err := vnetns.DeleteNamed(ns); err != nil {
				t.Fatal(err)
			}
		}},
		{"veth removed", "veth removed outside isolationd", func() {
			l.inRouter(func(_ *nftables.Conn, nl *netlink.Handle) error {
				link, err := nl.LinkByName(ns)
				if err != nil {
					return err
				}
				return nl.LinkDel(link)
			})
		}},
		{"chain flushed", "nftables rules flushed or deleted outside isolationd", func() {
			l.inRouter(func(c *nftables.Conn, _ *netlink.Handle) error {
				c.FlushChain(&nftables.Chain{Name: ns + "_from", Table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet}})
				return c.Flush()
			})
		}},
		{"table flushed", "nftables table flushed outside isolationd", func() {
			l.inRouter(func(c *nftables.Conn, _ *netlink.Handle) error {
				c.FlushTable(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
				return c.Flush()
			})
		}},
		{"table deleted", "nftables table deleted outside isolationd", func() {
			l.inRouter(func(c *nftables.Conn, _ *netlink.Handle) error {
				c.DelTable(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
				return c.Flush()
			})
		}},
	}
	for _, d := range drifts {
		ctx, cancel := context.WithCancel(l.ctx)
		versions := l.watchAll(ctx, env.ID)
		next(t, versions, time.Now().Add(repairDeadline), "streamed", func(apiv1.Environment) bool { return true })
		start := time.Now()
		d.do()
		deadline := start.Add(repairDeadline)
		got := next(t, versions, deadline, "reported drifted ("+d.name+")", func(e apiv1.Environment) bool {
			return !e.Enforcement.Enforced && strings.Contains(e.Enforcement.Message, d.reason)
		})
		seen := time.Since(start)
		next(t, versions, deadline, "repaired ("+d.name+")", func(e apiv1.Environment) bool {
			return e.Enforcement.Enforced && e.Enforcement.Message == "" && e.State == apiv1.StateReady
		})
		t.Logf("%s: reported %q after %v, repaired after %v", d.name, got.Enforcement.Message, seen.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		cancel()
		enforcedByPackets("after the repair of " + d.name)
		events, err := l.c.Audit().List(l.ctx, client.ListOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var drifted, repaired bool
		for _, ev := range events {
			if ev.Resource.ID != env.ID || ev.Time.Before(start.Add(-time.Second)) {
				continue
			}
			drifted = drifted || (ev.Action == "environment.drift" && ev.Reason == d.reason)
			repaired = repaired || (ev.Action == "environment.repair" && strings.Contains(ev.Reason, d.reason) && strings.Contains(ev.Reason, "repaired:"))
		}
		if !drifted || !repaired {
			t.Fatalf("%s: the audit trail lacks environment.drift (%v) or environment.repair (%v):\n%s", d.name, drifted, repaired, js(events))
		}
	}
}
