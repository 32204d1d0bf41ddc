package server_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce/netns/netnstest"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

var (
	apiSeedFlag   = flag.Uint64("netns-seed", 0, "seed of TestNetnsAPI_PacketsAgreeWithTheCheckEndpoint (0: random; ISOLATION_NETNS_SEED also sets it)")
	apiProbesFlag = flag.Int("netns-probes", 2400, "probes TestNetnsAPI_PacketsAgreeWithTheCheckEndpoint sends")
)

// The differential test's universe. The server allocates 198.18.0.2 to
// 198.18.0.6 to the five environments (fd00:198:18::c612:2 to :6 beside
// them), so these cidrs carve the environments up as well as the internet.
var (
	apiCIDRs = []apiv1.Peer{
		{CIDR: "198.19.0.0/16"},
		{CIDR: "198.19.0.0/16", Except: []string{"198.19.1.0/24"}},
		{CIDR: "198.19.0.0/24"},
		{CIDR: "198.19.1.0/24", Except: []string{"198.19.1.64/26"}},
		{CIDR: "198.19.0.0/17", Except: []string{"198.19.0.128/25"}},
		{CIDR: "0.0.0.0/0", Except: []string{"198.19.0.0/17"}},
		{CIDR: "198.18.0.0/16", Except: []string{"198.18.0.4/30"}},
		{CIDR: "198.18.0.2/31"},
		{CIDR: "198.18.0.5/32"},
		{CIDR: "fd00:198:19::/64", Except: []string{"fd00:198:19::8:0/112"}},
		{CIDR: "::/0", Except: []string{"fd00:198:19::/112"}},
		{CIDR: "fd00:198:18::/96", Except: []string{"fd00:198:18::c612:4/126"}},
		{CIDR: "fd00:198:18::c612:3/128"},
	}
	apiSelectors = []map[string]string{{"tier": "web"}, {"tier": "db"}, {"team": "a"}, {"team": "b"}, {"tier": "web", "team": "b"}}
	apiEnvLabels = []map[string]string{
		{"tier": "web", "team": "a"}, {"tier": "db", "team": "a"}, {"tier": "web", "team": "b"}, {"tier": "db", "team": "b"}, {"tier": "web", "team": "a"},
	}
)

// Random policies made through POST /v1/policies, thousands of random
// probes between the environments' namespaces and an internet, and every
// packet's fate must be what POST /v1/environments/{id}/check says of it:
// after the policies are created, after an environment's labels change,
// after a policy is patched, and after one is replaced. Every environment
// runs a workload, its container in the namespace the packets cross. A
// disagreement is shrunk, through the API, to the fewest policies and
// rules that still show it, and printed with the rulesets the driver
// rendered.
func TestNetnsAPI_PacketsAgreeWithTheCheckEndpoint(t *testing.T) {
	seed := netnstest.Seed(t, "netns-seed", *apiSeedFlag)
	l := runcLab(t)
	dt := &apiDifferential{t: t, l: l, seed: seed}
	disk := int64(1) // GiB, sparse
	var inits []int
	for i, labels := range apiEnvLabels {
		// One at a time: the addresses go to the environments in order.
		e, err := l.createRunning(apiv1.EnvironmentCreate{
			Name: fmt.Sprintf("env-%d", i), Labels: labels, Resources: &apiv1.ResourcesSpec{DiskGB: &disk},
			Workload: &apiv1.WorkloadSpec{Image: "busybox:test", Command: []string{"sleep", "3600"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		inits = append(inits, l.mustRunIn(e))
		netnstest.Serve(t, e.Enforcement.Namespace, probePorts)
		dt.envs = append(dt.envs, e)
		dt.ends = append(dt.ends, l.ends(e)...)
	}
	inet := l.internet()
	for _, a := range inet.Addrs {
		dt.ends = append(dt.ends, netnstest.Endpoint{Namespace: inet.Namespace, Addr: a})
	}
	gen := &netnstest.Generator{R: rand.New(rand.NewPCG(seed, 0)), CIDRs: apiCIDRs, Labels: apiSelectors, Ports: probePorts}

	// Each round changes something through the API, waits until every
	// environment has enforced it, and probes.
	rounds := []struct {
		what   string
		change func() string
	}{
		{"policies created", func() string {
			for i := range 3 + gen.R.IntN(6) {
				dt.policies = append(dt.policies, l.createPolicy(gen.PolicySpec(fmt.Sprintf("p%d", i))))
			}
			return fmt.Sprintf("%d policies", len(dt.policies))
		}},
		{"labels changed", dt.relabel(gen)},
		{"policy patched", func() string {
			i := gen.R.IntN(len(dt.policies))
			spec := gen.PolicySpec(dt.policies[i].Name)
			p, err := l.c.Policies().Update(l.ctx, dt.policies[i].ID, apiv1.PolicyPatch{
				EnvironmentSelector: &spec.EnvironmentSelector, PolicyTypes: &spec.PolicyTypes, Ingress: &spec.Ingress, Egress: &spec.Egress,
			}, dt.policies[i].ETag)
			if err != nil {
				t.Fatal(err)
			}
			dt.policies[i] = *p
			return "policy " + p.Name
		}},
		{"policy replaced and labels changed", func() string {
			i := gen.R.IntN(len(dt.policies))
			if err := l.c.Policies().Delete(l.ctx, dt.policies[i].ID, ""); err != nil {
				t.Fatal(err)
			}
			dt.policies[i] = l.createPolicy(gen.PolicySpec(dt.policies[i].Name + "r"))
			return "policy " + dt.policies[i].Name + ", " + dt.relabel(gen)()
		}},
	}
	perRound := (*apiProbesFlag + len(rounds) - 1) / len(rounds)
	// The probes usually take a few seconds; a machine too loaded to send
	// them within this bound fails the test, saying so, rather than hang.
	probing, cancel := context.WithTimeout(l.ctx, 50*time.Second)
	defer cancel()
	rs := &netnstest.Rounds{Seed: seed}
	start := time.Now()
	for round, r := range rounds {
		what := r.change()
		dt.envs = l.mustEnforce(dt.envs)
		results := netnstest.Run(probing, gen.Probes(dt.ends, perRound), dt.oracle(), 48, denyTimeout)
		rs.Check(t, fmt.Sprintf("%d (%s: %s)", round, r.what, what), results, dt.reproduce)
		t.Logf("round %d (%s: %s): %d probes agree", round, r.what, what, len(results))
	}
	t.Logf("%d probes agreed with the check endpoint (%d through, %d dropped) in %v", rs.Sent, rs.Through, rs.Sent-rs.Through, time.Since(start).Round(time.Millisecond))
	rs.Enough(t, 2000)
	// Relabelling an environment and changing its policies leave its
	// workload alone.
	for i, e := range dt.envs {
		if pid := l.mustRunIn(e); pid != inits[i] {
			t.Errorf("environment %s: its workload's init is %d after the rounds, %d before them", e.ID, pid, inits[i])
		}
	}
}

// mustRunIn fails the test unless environment e's workload runs in the
// network namespace the API reports for it, and returns its init's pid.
func (l *apiLab) mustRunIn(e apiv1.Environment) int {
	l.tb.Helper()
	st, err := l.srv.Runtime().Status(l.ctx, e.ID)
	if err != nil || st.Pid == 0 {
		l.tb.Fatalf("environment %s: the runtime sees no running workload: %+v %v", e.ID, st, err)
	}
	var want, got unix.Stat_t
	if err := unix.Stat(filepath.Join("/run/netns", e.Enforcement.Namespace), &want); err != nil {
		l.tb.Fatal(err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", st.Pid), &got); err != nil {
		l.tb.Fatal(err)
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		l.tb.Fatalf("environment %s: its workload's init %d is not in network namespace %s", e.ID, st.Pid, e.Enforcement.Namespace)
	}
	return st.Pid
}

// apiDifferential is the state of the differential test: the environments
// as last read, their probe ends, and the policies in force.
type apiDifferential struct {
	t        *testing.T
	l        *apiLab
	seed     uint64
	envs     []apiv1.Environment
	ends     []netnstest.Endpoint
	policies []apiv1.Policy
}

// oracle is the check endpoint, itself checked against the effective
// policies the API computes from what is stored: the check endpoint
// answers from the rules the driver last applied, so without this a
// change the driver never applied would pass unnoticed, the packets
// agreeing with stale rules.
func (dt *apiDifferential) oracle() netnstest.Oracle {
	desired := map[string]*policy.Ruleset{}
	generation := map[string]int64{}
	for _, e := range dt.envs {
		eff, err := dt.l.c.Environments().EffectivePolicy(dt.l.ctx, e.ID)
		if err != nil {
			dt.t.Fatal(err)
		}
		desired[e.ID], generation[e.ID] = policy.Compile(*eff), eff.Generation
	}
	return func(envID string, req apiv1.CheckRequest) (bool, error) {
		allowed, err := dt.l.oracle(envID, req)
		if err != nil {
			return false, err
		}
		if want := desired[envID].Check(req).Allowed; want != allowed {
			return false, fmt.Errorf("the check endpoint says allowed=%v, the effective policy (generation %d) says %v: the driver does not enforce the current rules", allowed, generation[envID], want)
		}
		return allowed, nil
	}
}

// relabel returns a change giving a random environment labels it does
// not have.
func (dt *apiDifferential) relabel(gen *netnstest.Generator) func() string {
	return func() string {
		i := gen.R.IntN(len(dt.envs))
		var others []map[string]string
		for _, labels := range apiEnvLabels {
			if !maps.Equal(labels, dt.envs[i].Labels) {
				others = append(others, labels)
			}
		}
		labels := maps.Clone(others[gen.R.IntN(len(others))])
		e, err := dt.l.c.Environments().Update(dt.l.ctx, dt.envs[i].ID, apiv1.EnvironmentPatch{Labels: &labels}, dt.envs[i].ETag)
		if err != nil {
			dt.t.Fatal(err)
		}
		dt.envs[i] = *e
		return fmt.Sprintf("%s now %v", e.Name, labels)
	}
}

// setPolicies makes specs the project's only policies and waits until
// every environment enforces them.
func (dt *apiDifferential) setPolicies(specs []apiv1.PolicySpec) {
	dt.t.Helper()
	for _, p := range dt.policies {
		if err := dt.l.c.Policies().Delete(dt.l.ctx, p.ID, ""); err != nil {
			dt.t.Fatal(err)
		}
	}
	dt.policies = nil
	for _, s := range specs {
		dt.policies = append(dt.policies, dt.l.createPolicy(s))
	}
	dt.envs = dt.l.mustEnforce(dt.envs)
}

// disagrees enforces the specs of policies and sends p once, patiently.
func (dt *apiDifferential) disagrees(policies []apiv1.Policy, p netnstest.Probe) bool {
	dt.setPolicies(specsOf(policies))
	want, err := netnstest.Expect(p, dt.l.oracle)
	if err != nil {
		dt.t.Fatal(err)
	}
	got, err := netnstest.Send(dt.l.ctx, p, time.Second)
	return err == nil && got != want
}

// specsOf is what POST /v1/policies was given for each of policies.
func specsOf(policies []apiv1.Policy) []apiv1.PolicySpec {
	specs := make([]apiv1.PolicySpec, len(policies))
	for i, pol := range policies {
		specs[i] = pol.PolicySpec
	}
	return specs
}

// reproduce shrinks the policies in force to the fewest policies, then
// rules, that still make p disagree, and describes the result: seed,
// labels, policies, checks, effective policies and rulesets.
func (dt *apiDifferential) reproduce(p netnstest.Probe) string {
	reduced, reproduces := netnstest.Shrink(dt.policies, func(cand []apiv1.Policy) bool { return dt.disagrees(cand, p) })
	cur := specsOf(reduced)
	var b strings.Builder
	b.WriteString(netnstest.ReportHeader(dt.seed, p, reproduces))
	for _, e := range dt.envs {
		fmt.Fprintf(&b, "environment %s (%s): labels %v, address %s, namespace %s\n", e.ID, e.Name, e.Labels, e.Enforcement.Address, e.Enforcement.Namespace)
	}
	fmt.Fprintf(&b, "policies (POST /v1/policies bodies):\n%s\n", js(cur))
	for dir, req := range p.Requests() {
		env := p.Env(dir)
		res, err := dt.l.c.Environments().Check(context.Background(), env, req)
		fmt.Fprintf(&b, "\n%s: POST /v1/environments/%s/check %s: %s (err %v)\n", dir, env, js(req), js(res), err)
		eff, err := dt.l.c.Environments().EffectivePolicy(context.Background(), env)
		fmt.Fprintf(&b, "%s effective policy (err %v):\n%s\n", env, err, js(eff))
		text, err := dt.l.driver().Ruleset(env)
		fmt.Fprintf(&b, "%s ruleset (err %v):\n%s", env, err, text)
	}
	return b.String()
}
