package policy

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// FuzzPolicySpecValidate feeds arbitrary JSON to validation and, for the
// specs that pass, checks Effective+Evaluate against a brute-force
// reference evaluator that reads the spec directly.
//
//	go test ./internal/policy/ -run '^$' -fuzz FuzzPolicySpecValidate -fuzztime 20s
func FuzzPolicySpecValidate(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"name":"a","policy_types":["ingress"],"ingress":[{}]}`,
		`{"name":"a","policy_types":["ingress","egress"],"ingress":[],"egress":[{"to":[],"ports":[]}]}`,
		`{"name":"web","environment_selector":{"match_labels":{"tier":"web"}},"policy_types":["ingress"],
		  "ingress":[{"from":[{"cidr":"10.0.0.0/8","except":["10.1.0.0/16","10.255.255.255/32"]}],
		  "ports":[{"port":443},{"protocol":"udp","port":8000,"end_port":8080},{"protocol":"icmp"}]}]}`,
		`{"name":"v6","policy_types":["egress"],"egress":[{"to":[{"cidr":"2001:db8::/32","except":["2001:db8:1::/48"]},{"cidr":"0.0.0.0/0"}],
		  "ports":[{"protocol":"tcp","port":1,"end_port":65535}]}]}`,
		`{"name":"peers","environment_selector":{"match_labels":{}},"policy_types":["egress","ingress"],
		  "egress":[{"to":[{"environment_selector":{"match_labels":{"tier":"db"}}}],"ports":[{"port":5432}]}],
		  "ingress":[{"from":[{"environment_selector":{"match_labels":{}}}]}]}`,
		`{"name":"bad","policy_types":["ingress","ingress"],"ingress":[{"from":[{"cidr":"10.0.0.1/8","except":["11.0.0.0/8"]},{}],
		  "ports":[{"protocol":"icmp","port":0,"end_port":70000},{"end_port":1}]}]}`,
		`{"name":"x","policy_types":["egress"],"egress":[{"to":[{"cidr":"::ffff:10.0.0.0/104"},{"cidr":"10.0.0.0/8","except":["::/0"]}]}]}`,
	} {
		f.Add([]byte(s), uint64(len(s)))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		var spec apiv1.PolicySpec
		if json.Unmarshal(data, &spec) != nil {
			return
		}
		errs := spec.Validate()

		norm := spec.Normalize()
		if diff := cmp.Diff(norm, norm.Normalize()); diff != "" {
			t.Fatalf("Normalize is not idempotent (-once +twice):\n%s", diff)
		}
		if diff := cmp.Diff(errs, norm.Validate()); diff != "" {
			t.Fatalf("Normalize changed validity (-before +after):\n%s", diff)
		}
		assertRoundTrips(t, norm)
		if errs != nil {
			return
		}

		target, envs := fuzzEnvironments(spec)
		p := apiv1.Policy{ID: "fz", ProjectID: "p1", PolicySpec: norm}
		eff := Effective(target, []apiv1.Policy{p}, envs)
		rs := Compile(eff)
		rng := rand.New(rand.NewPCG(seed, uint64(len(data))))
		addrs := candidateAddrs(spec, envs, rng)
		ports := candidatePorts(spec, rng)
		for range 200 {
			req := apiv1.CheckRequest{
				Direction: pick(rng, []string{apiv1.Ingress, apiv1.Egress}),
				Protocol:  pick(rng, []string{"", apiv1.ProtocolTCP, apiv1.ProtocolUDP, apiv1.ProtocolSCTP, apiv1.ProtocolICMP}),
				Address:   pick(rng, addrs),
				Port:      pick(rng, ports),
			}
			got := rs.Check(req)
			var want apiv1.CheckResult
			for _, i := range referenceMatch(spec, target, envs, req) {
				want.Rules = append(want.Rules, apiv1.Match{PolicyID: "fz", PolicyName: spec.Name, Direction: req.Direction, RuleIndex: i})
			}
			if len(want.Rules) > 0 {
				want.Allowed, want.Matched = true, &want.Rules[0]
			}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(apiv1.CheckResult{}, "Reason")); diff != "" {
				t.Fatalf("check %+v disagrees with the reference (-want +got):\n%s\neffective: %+v", req, diff, eff)
			}
		}
	})
}

// assertRoundTrips checks that a client sending the normalized form gets
// back the same bytes.
func assertRoundTrips(t *testing.T, norm apiv1.PolicySpec) {
	t.Helper()
	first, err := json.Marshal(norm)
	if err != nil {
		t.Fatal(err)
	}
	var back apiv1.PolicySpec
	if err := json.Unmarshal(first, &back); err != nil {
		t.Fatal(err)
	}
	second, err := json.Marshal(back.Normalize())
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Fatalf("normalized form does not round-trip:\n %s\n %s", first, second)
	}
}

// fuzzEnvironments makes an environment the first spec selects, and for
// every peer selector of every spec an environment of the same project it
// matches, one being deleted and one of another project, each with its own
// address.
func fuzzEnvironments(specs ...apiv1.PolicySpec) (apiv1.Environment, []apiv1.Environment) {
	mk := func(i int, project string, l map[string]string) apiv1.Environment {
		addr := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()
		if i%2 == 1 {
			addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}).String()
		}
		if i%5 == 4 {
			addr = "" // not provisioned yet
		}
		return apiv1.Environment{ID: "e" + strconv.Itoa(i), ProjectID: project, Name: "n" + strconv.Itoa(i),
			Labels: apiv1.NormalizeLabels(l), State: apiv1.StateReady, Enforcement: apiv1.Enforcement{Address: addr}}
	}
	target := mk(0, "p1", specs[0].EnvironmentSelector.MatchLabels)
	target.Labels["fuzz-target"] = "yes"
	envs := []apiv1.Environment{target, mk(1, "p1", nil)}
	var sels []map[string]string
	for _, spec := range specs {
		for _, peers := range allPeers(spec) {
			for _, p := range peers {
				if p.EnvironmentSelector != nil {
					sels = append(sels, p.EnvironmentSelector.MatchLabels)
				}
			}
		}
	}
	for _, l := range sels {
		n := len(envs)
		envs = append(envs, mk(n, "p1", l), mk(n+1, "p2", l), mk(n+2, "p1", l))
		envs[n+2].State = apiv1.StateDeleting
	}
	return target, envs
}

func candidateAddrs(spec apiv1.PolicySpec, envs []apiv1.Environment, rng *rand.Rand) []string {
	out := []string{"0.0.0.0", "255.255.255.255", "::", "::1", "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "junk"}
	addPrefix := func(s string) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return
		}
		first, last := p.Masked().Addr(), lastAddr(p)
		for _, a := range []netip.Addr{first, last, first.Prev(), last.Next(), randomIn(p, rng)} {
			if a.IsValid() {
				out = append(out, a.String())
				if a.Is4() {
					out = append(out, netip.AddrFrom16(a.As16()).String()) // IPv4-mapped
				}
			}
		}
	}
	for _, peers := range allPeers(spec) {
		for _, p := range peers {
			addPrefix(p.CIDR)
			for _, x := range p.Except {
				addPrefix(x)
			}
		}
	}
	for _, e := range envs {
		if e.Enforcement.Address != "" {
			out = append(out, e.Enforcement.Address)
		}
	}
	return out
}

func allPeers(spec apiv1.PolicySpec) [][]apiv1.Peer {
	var out [][]apiv1.Peer
	for _, r := range spec.Ingress {
		out = append(out, r.From)
	}
	for _, r := range spec.Egress {
		out = append(out, r.To)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func randomIn(p netip.Prefix, rng *rand.Rand) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func candidatePorts(spec apiv1.PolicySpec, rng *rand.Rand) []int {
	out := []int{0, 1, 2, 80, 443, 65534, 65535, 1 + rng.IntN(65535)}
	var ports [][]apiv1.Port
	for _, r := range spec.Ingress {
		ports = append(ports, r.Ports)
	}
	for _, r := range spec.Egress {
		ports = append(ports, r.Ports)
	}
	for _, p := range slices.Concat(ports...) {
		for _, v := range []*int{p.Port, p.EndPort} {
			if v != nil {
				out = append(out, *v-1, *v, *v+1)
			}
		}
	}
	return out
}

func pick[T any](rng *rand.Rand, from []T) T { return from[rng.IntN(len(from))] }

// referenceMatch is the semantics written out the slow, obvious way,
// straight from the spec: the index of the first rule of req's direction
// that allows it, or -1.
func referenceMatch(spec apiv1.PolicySpec, target apiv1.Environment, envs []apiv1.Environment, req apiv1.CheckRequest) []int {
	type refRule struct {
		peers []apiv1.Peer
		ports []apiv1.Port
	}
	var rules []refRule
	for _, t := range spec.PolicyTypes {
		if t != req.Direction {
			continue
		}
		if t == apiv1.Ingress {
			for _, r := range spec.Ingress {
				rules = append(rules, refRule{r.From, r.Ports})
			}
		} else {
			for _, r := range spec.Egress {
				rules = append(rules, refRule{r.To, r.Ports})
			}
		}
	}
	proto := req.Protocol
	if proto == "" {
		proto = "tcp"
	}
	var matched []int
	for i, r := range rules {
		peerOK := len(r.peers) == 0
		for _, p := range r.peers {
			peerOK = peerOK || refPeer(p, target, envs, req.Address)
		}
		portOK := len(r.ports) == 0
		for _, p := range r.ports {
			pp := p.Protocol
			if pp == "" {
				pp = "tcp"
			}
			switch {
			case pp != proto, p.PortName != "": // no workload declares a name here
			case pp == "icmp", p.Port == nil:
				portOK = true
			case p.EndPort == nil:
				portOK = portOK || *p.Port == req.Port
			default:
				portOK = portOK || (*p.Port <= req.Port && req.Port <= *p.EndPort)
			}
		}
		if peerOK && portOK {
			matched = append(matched, i)
		}
	}
	return matched
}

// refSelects is a label selector's meaning, written out again.
func refSelects(sel apiv1.Selector, labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, x := range sel.MatchExpressions {
		v, ok := labels[x.Key]
		in := false
		for _, w := range x.Values {
			in = in || (ok && v == w)
		}
		if (x.Operator == apiv1.OpIn && !in) || (x.Operator == apiv1.OpNotIn && in) ||
			(x.Operator == apiv1.OpExists && !ok) || (x.Operator == apiv1.OpDoesNotExist && ok) {
			return false
		}
	}
	return true
}

func refPeer(p apiv1.Peer, target apiv1.Environment, envs []apiv1.Environment, address string) bool {
	a, err := netip.ParseAddr(address)
	if err != nil {
		return false
	}
	if p.ProjectSelector != nil {
		return false // the fuzzed projects have no labels to select
	}
	if p.EnvironmentSelector != nil {
		for _, e := range envs {
			if e.ProjectID != target.ProjectID || e.State == apiv1.StateDeleting || e.State == apiv1.StateExpired {
				continue
			}
			matches := refSelects(*p.EnvironmentSelector, e.Labels)
			if ea, err := netip.ParseAddr(e.Enforcement.Address); matches && err == nil && ea.As16() == a.As16() {
				return true
			}
		}
		return false
	}
	if !refContains(p.CIDR, a) {
		return false
	}
	for _, x := range p.Except {
		if refContains(x, a) {
			return false
		}
	}
	return true
}

// refContains compares the leading bits of the prefix and the address,
// one bit at a time, after putting both in their own family's bytes.
func refContains(prefix string, a netip.Addr) bool {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return false
	}
	is4 := func(x netip.Addr) bool { return x.Is4() || x.Is4In6() }
	if is4(a) != p.Addr().Is4() {
		return false
	}
	pb, ab := p.Addr().As16(), a.As16()
	offset := 0
	if p.Addr().Is4() {
		offset = 96
	}
	for i := range p.Bits() {
		bit := offset + i
		if pb[bit/8]&(0x80>>(bit%8)) != ab[bit/8]&(0x80>>(bit%8)) {
			return false
		}
	}
	return true
}

// FuzzEvaluateChecks merges several policies, some of another project or
// not selecting the environment, and answers a check request whose fields
// are arbitrary (unknown directions and protocols, zoned, mapped and
// malformed addresses, ports out of range): the answer, compiled once or
// evaluated per call, is the reference's, which walks the policies in
// name-then-id order and their rules straight from the specs.
//
//	go test ./internal/policy/ -run '^$' -fuzz FuzzEvaluateChecks -fuzztime 20s
func FuzzEvaluateChecks(f *testing.F) {
	for _, s := range []struct {
		specs, direction, protocol, address string
		port                                int
	}{
		{`[{"name":"b","policy_types":["ingress"],"ingress":[{"from":[{"cidr":"198.18.0.0/15"}],"ports":[{"port":443}]}]},
		   {"name":"a","policy_types":["ingress"],"ingress":[{"ports":[{"port":443}]}]}]`, "ingress", "", "198.18.0.5", 443},
		{`[{"name":"a","policy_types":["egress"],"egress":[{"to":[{"environment_selector":{"match_labels":{"tier":"db"}}}]}]},
		   {"name":"a","policy_types":["egress"],"egress":[{"to":[{"cidr":"0.0.0.0/0","except":["198.18.0.0/16"]}],"ports":[{"protocol":"udp"}]}]}]`,
			"egress", "udp", "::ffff:198.18.0.2", 53},
		{`[{"name":"v6","environment_selector":{"match_labels":{"app":"x"}},"policy_types":["ingress","egress"],
		   "ingress":[{"from":[{"cidr":"2001:db8::/32"}],"ports":[{"protocol":"tcp","port":1000,"end_port":2000}]}],"egress":[{}]},
		   {"name":"other","policy_types":["ingress"],"ingress":[{}]},{"name":"third","policy_types":["ingress"],"ingress":[{}]}]`,
			"ingress", "tcp", "2001:db8::3%eth0", 1500},
		{`[{"name":"icmp","policy_types":["ingress"],"ingress":[{"ports":[{"protocol":"icmp"}]}]}]`, "ingress", "icmp", "10.0.0.1", -1},
		{`[{"name":"p","policy_types":["egress"],"egress":[{"ports":[{"port":80}]}]}]`, "Egress", "TCP", "junk", 65536},
	} {
		f.Add([]byte(s.specs), s.direction, s.protocol, s.address, s.port)
	}
	f.Fuzz(func(t *testing.T, data []byte, direction, protocol, address string, port int) {
		var specs []apiv1.PolicySpec
		if json.Unmarshal(data, &specs) != nil {
			return
		}
		var valid []apiv1.PolicySpec
		var policies []apiv1.Policy
		for i, spec := range specs[:min(len(specs), 4)] {
			if spec.Validate() != nil {
				continue
			}
			project := "p1"
			if i == 2 {
				project = "p2" // another project's policy never applies
			}
			valid = append(valid, spec)
			policies = append(policies, apiv1.Policy{ID: "fz" + strconv.Itoa(i), ProjectID: project, PolicySpec: spec.Normalize()})
		}
		if len(valid) == 0 {
			return
		}
		target, envs := fuzzEnvironments(valid...)
		eff := Effective(target, policies, envs)
		req := apiv1.CheckRequest{Direction: direction, Protocol: protocol, Address: address, Port: port}
		got := Compile(eff).Check(req)
		if diff := cmp.Diff(got, Evaluate(eff, req)); diff != "" {
			t.Fatalf("Evaluate and a compiled Ruleset disagree on %+v:\n%s", req, diff)
		}
		if got.Reason == "" {
			t.Fatalf("check %+v has no reason", req)
		}
		if diff := cmp.Diff(referenceCheck(policies, target, envs, req), got, cmpopts.IgnoreFields(apiv1.CheckResult{}, "Reason")); diff != "" {
			t.Fatalf("check %+v disagrees with the reference (-want +got):\n%s\neffective: %+v", req, diff, eff)
		}
	})
}

// referenceCheck answers req over every policy that applies to target:
// the first rule that allows it, policies taken by name, then id.
func referenceCheck(policies []apiv1.Policy, target apiv1.Environment, envs []apiv1.Environment, req apiv1.CheckRequest) apiv1.CheckResult {
	ordered := slices.Clone(policies)
	slices.SortFunc(ordered, func(a, b apiv1.Policy) int {
		if a.Name != b.Name {
			return strings.Compare(a.Name, b.Name)
		}
		return strings.Compare(a.ID, b.ID)
	})
	var out apiv1.CheckResult
	for _, p := range ordered {
		if p.ProjectID != target.ProjectID || !refSelects(p.EnvironmentSelector, target.Labels) {
			continue
		}
		for _, i := range referenceMatch(p.PolicySpec, target, envs, req) {
			out.Rules = append(out.Rules, apiv1.Match{PolicyID: p.ID, PolicyName: p.Name, Direction: req.Direction, RuleIndex: i})
		}
	}
	if len(out.Rules) > 0 {
		out.Allowed, out.Matched = true, &out.Rules[0]
	}
	return out
}
