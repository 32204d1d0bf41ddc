package netns_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

var (
	seedFlag   = flag.Uint64("seed", 0, "seed of TestDifferential (0: random; ISOLATION_NETNS_SEED also sets it)")
	probesFlag = flag.Int("probes", 2400, "probes TestDifferential sends")
)

// The differential test's universe: peers that carve the internet and the
// environments up in overlapping ways, labels to select by, and the probe
// ports (whose pairs make the ranges).
var (
	diffCIDRs = []apiv1.Peer{
		{CIDR: "198.19.0.0/16"},
		{CIDR: "198.19.0.0/16", Except: []string{"198.19.1.0/24"}},
		{CIDR: "198.19.0.0/16", Except: []string{"198.19.0.0/24", "198.19.2.0/24"}},
		{CIDR: "198.19.0.0/24"},
		{CIDR: "198.19.1.0/24", Except: []string{"198.19.1.64/26"}},
		{CIDR: "198.19.0.0/17", Except: []string{"198.19.0.128/25"}},
		{CIDR: "198.18.0.0/16", Except: []string{"198.18.0.8/30"}},
		{CIDR: "198.18.0.12/31"},
		{CIDR: "0.0.0.0/0", Except: []string{"198.19.0.0/17"}},
		{CIDR: "198.19.0.10/32"},
		{CIDR: "fd00:198:19::/64", Except: []string{"fd00:198:19::8:0/112"}},
		{CIDR: "fd00:198:19::/112"},
		{CIDR: "::/0", Except: []string{"fd00:198:19::ff:0/112"}},
		{CIDR: "fd00:198:18::/96", Except: []string{"fd00:198:18::c612:c/127"}},
		{CIDR: "fd00:198:18::c612:a/128"},
	}
	diffLabels = []map[string]string{{"tier": "web"}, {"tier": "db"}, {"team": "a"}, {"team": "b"}, {"tier": "web", "team": "b"}}
	diffEnvs   = []map[string]string{
		{"tier": "web", "team": "a"}, {"tier": "db", "team": "a"}, {"tier": "web", "team": "b"}, {"tier": "db", "team": "b"}, {"tier": "web", "team": "a"},
	}
)

// TestDifferential_PacketsAgreeWithCheck applies random policies to a
// handful of environments, sends thousands of random probes, and requires
// every packet's fate to be what Check (policy.Evaluate on the rules
// applied) says. A disagreement is shrunk to the fewest policies and rules
// that still show it, and printed with the rendered rulesets.
func TestDifferential_PacketsAgreeWithCheck(t *testing.T) {
	seed := netnstest.Seed(t, "seed", *seedFlag)
	l := newLab(t)
	dt := newDifferential(t, l, seed)
	gen := &netnstest.Generator{R: rand.New(rand.NewPCG(seed, 0)), CIDRs: diffCIDRs, Labels: diffLabels, Ports: probePort}

	const rounds = 4
	perRound := (*probesFlag + rounds - 1) / rounds
	rs := &netnstest.Rounds{Seed: seed}
	start := time.Now()
	for round := range rounds {
		policies := make([]apiv1.Policy, 2+gen.R.IntN(7))
		for i := range policies {
			policies[i] = apiv1.Policy{ID: fmt.Sprintf("pol-%d-%d", round, i), ProjectID: "proj", PolicySpec: gen.PolicySpec(fmt.Sprintf("p%d", i))}
		}
		dt.applyAll(policies, int64(round+1))
		results := netnstest.Run(context.Background(), gen.Probes(dt.ends, perRound), checkOracle(l), 48, denyTimeout)
		rs.Check(t, strconv.Itoa(round), results, func(p netnstest.Probe) string { return dt.reproduce(policies, p) })
	}
	t.Logf("%d probes agreed with Check (%d through, %d dropped) in %v", rs.Sent, rs.Through, rs.Sent-rs.Through, time.Since(start).Round(time.Millisecond))
	rs.Enough(t, 2000)
}

// newDifferential provisions the environments of diffEnvs in l, and
// lists them and the internet's hosts as the probes' ends.
func newDifferential(t *testing.T, l *lab, seed uint64) *differential {
	t.Helper()
	dt := &differential{t: t, l: l, seed: seed}
	for i, labels := range diffEnvs {
		id := fmt.Sprintf("env-%d", i)
		addr := fmt.Sprintf("198.18.0.%d", 10+i)
		v4, v6 := l.env(t, id, addr)
		dt.ends = append(dt.ends, v4, v6)
		dt.envs = append(dt.envs, apiv1.Environment{
			ID: id, ProjectID: "proj", Name: id, Labels: labels, State: apiv1.StateReady,
			Enforcement: apiv1.Enforcement{Driver: "netns", Address: addr},
		})
	}
	for _, a := range internetHosts {
		dt.ends = append(dt.ends, netnstest.Endpoint{Namespace: l.inet.Namespace, Addr: a})
	}
	return dt
}

type differential struct {
	t    *testing.T
	l    *lab
	seed uint64
	envs []apiv1.Environment
	ends []netnstest.Endpoint
}

// applyAll computes every environment's effective policy, as the control
// plane does, and applies it.
func (dt *differential) applyAll(policies []apiv1.Policy, generation int64) {
	dt.t.Helper()
	for _, e := range dt.envs {
		e.Enforcement.Generation = generation
		if err := dt.l.d.Apply(context.Background(), e.ID, policy.Effective(e, policies, dt.envs)); err != nil {
			dt.t.Fatal(err)
		}
	}
}

// disagrees applies policies and sends p once, patiently.
func (dt *differential) disagrees(policies []apiv1.Policy, p netnstest.Probe) bool {
	dt.applyAll(policies, 1000)
	want, err := netnstest.Expect(p, checkOracle(dt.l))
	if err != nil {
		dt.t.Fatal(err)
	}
	got, err := netnstest.Send(context.Background(), p, time.Second)
	return err == nil && got != want
}

// reproduce shrinks policies to the fewest policies, then rules, that
// still make p disagree, and describes the result with the rulesets.
func (dt *differential) reproduce(policies []apiv1.Policy, p netnstest.Probe) string {
	cur, reproduces := netnstest.Shrink(policies, func(cand []apiv1.Policy) bool { return dt.disagrees(cand, p) })
	var b strings.Builder
	b.WriteString(netnstest.ReportHeader(dt.seed, p, reproduces))
	js, _ := json.MarshalIndent(cur, "", "  ")
	fmt.Fprintf(&b, "policies:\n%s\n", js)
	for dir, req := range p.Requests() {
		env := p.Env(dir)
		res, err := dt.l.d.Check(context.Background(), env, req)
		rjs, _ := json.Marshal(req)
		fmt.Fprintf(&b, "\n%s check %s: allowed=%v matched=%+v err=%v\n", env, rjs, res.Allowed, res.Matched, err)
		for _, e := range dt.envs {
			if e.ID == env {
				ejs, _ := json.MarshalIndent(policy.Effective(e, cur, dt.envs), "", "  ")
				fmt.Fprintf(&b, "%s effective policy:\n%s\n", env, ejs)
			}
		}
		text, _ := dt.l.d.Ruleset(env)
		fmt.Fprintf(&b, "%s ruleset:\n%s", env, text)
	}
	return b.String()
}
