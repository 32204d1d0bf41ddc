package policy

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"slices"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Assertions (policy tests) answered against a state of the world: the
// packets an assertion stands for, and which of them a change breaks.
// A packet between environments is allowed when the sender's egress and
// the receiver's ingress both allow it, as the check engine answers each.

// World is the state assertions are answered in: projects' labels by id,
// their environments and every policy that may select those environments.
type World struct {
	Projects     map[string]map[string]string
	Environments []apiv1.Environment
	Policies     []apiv1.Policy
}

// Packet is one packet an assertion stands for, and the rules' answer.
type Packet struct {
	FromID, FromName string
	// ToID and ToName name the destination environment and ToProjectID
	// its project, "" for a cidr or fqdn target; To is the address or
	// host name checked.
	ToID, ToName, ToProjectID string
	To                        string
	Protocol                  string
	Port                      int
	Allowed                   bool
}

// String names the packet: "tcp/5432 from web (env_1) to db (env_2)".
func (p Packet) String() string {
	to := p.To
	if p.ToID != "" {
		to = fmt.Sprintf("%s (%s)", p.ToName, p.ToID)
	}
	return p.from() + " to " + to
}

// Redacted names the packet without its destination, for a reader who
// may not see the destination's project: "tcp/5432 from web (env_1) to
// an environment of another project".
func (p Packet) Redacted() string { return p.from() + " to an environment of another project" }

func (p Packet) from() string {
	return fmt.Sprintf("%s from %s (%s)", packetName(p.Protocol, p.Port), p.FromName, p.FromID)
}

func (p Packet) key() string { return p.FromID + "|" + p.ToID + "|" + p.To }

// Evaluator answers assertions against one World, compiling each
// environment's rules once however many assertions ask about it.
type Evaluator struct {
	projects  map[string]map[string]string
	envs      []apiv1.Environment // eligible ones, by id, each with an address
	policies  []apiv1.Policy
	effective map[string]apiv1.EffectivePolicy
	rulesets  map[string]*Ruleset
	verdicts  map[verdictKey]bool
	picked    map[string][]int
}

// NewEvaluator prepares w for answering assertions. Environments on their
// way out take part in nothing; one not yet given an address stands in
// with a unique-local IPv6 address derived from its id, so that selector
// peers still pick it (a CIDR peer matches it only if it covers that).
func NewEvaluator(w World) *Evaluator {
	ev := &Evaluator{
		projects: w.Projects, policies: w.Policies, effective: map[string]apiv1.EffectivePolicy{}, rulesets: map[string]*Ruleset{},
		verdicts: map[verdictKey]bool{}, picked: map[string][]int{},
	}
	for _, e := range w.Environments {
		if !PeerEligible(e) {
			continue
		}
		if e.Enforcement.Address == "" {
			e.Enforcement.Address = standInAddress(e.ID)
		}
		ev.envs = append(ev.envs, e)
	}
	slices.SortFunc(ev.envs, func(a, b apiv1.Environment) int { return cmp.Compare(a.ID, b.ID) })
	ev.envs = slices.CompactFunc(ev.envs, func(a, b apiv1.Environment) bool { return a.ID == b.ID })
	return ev
}

// standInAddress is an address of fd00::/8 that only id maps to.
func standInAddress(id string) string {
	sum := sha256.Sum256([]byte(id))
	var b [16]byte
	b[0] = 0xfd
	copy(b[1:], sum[:15])
	return netip.AddrFrom16(b).String()
}

func (ev *Evaluator) rules(e apiv1.Environment) (apiv1.EffectivePolicy, *Ruleset) {
	if rs, ok := ev.rulesets[e.ID]; ok {
		return ev.effective[e.ID], rs
	}
	eff := EffectiveAcross(e, ev.policies, ev.envs, ev.projects)
	rs := Compile(eff)
	ev.effective[e.ID], ev.rulesets[e.ID] = eff, rs
	return eff, rs
}

// Packets lists the packets a stands for, sources and then destinations
// in id order, with the rules' answer for each.
func (ev *Evaluator) Packets(a apiv1.Assertion) []Packet {
	var out []Packet
	ev.each(a, nil, func(p Packet) bool { out = append(out, p); return true })
	return out
}

// each yields a's packets in Packets' order until yield returns false,
// only those from or to an environment of only when only is not nil.
func (ev *Evaluator) each(a apiv1.Assertion, only map[string]bool, yield func(Packet) bool) {
	for _, i := range ev.sources(a) {
		if !ev.eachFrom(a, ev.envs[i], only, yield) {
			return
		}
	}
}

// sources and targets are the environments (indexes into envs) an
// assertion's from and to pick, remembered by what picks them: assertions
// of a project share a few selectors.
func (ev *Evaluator) sources(a apiv1.Assertion) []int {
	key := "from|" + a.ProjectID + "|" + a.From.Environment + "|" + pickKey(a.From.EnvironmentSelector)
	return ev.pick(key, func(e apiv1.Environment) bool {
		if e.ProjectID != a.ProjectID {
			return false
		}
		if a.From.Environment != "" {
			return e.Name == a.From.Environment
		}
		return Selects(*a.From.EnvironmentSelector, e.Labels)
	})
}

func (ev *Evaluator) targets(a apiv1.Assertion) []int {
	t := a.To
	key := "to|" + a.ProjectID + "|" + t.Environment + "|" + pickKey(t.EnvironmentSelector) + "|" + pickKey(t.ProjectSelector)
	return ev.pick(key, func(e apiv1.Environment) bool {
		if t.Environment != "" {
			return e.ProjectID == a.ProjectID && e.Name == t.Environment
		}
		if t.EnvironmentSelector != nil && !Selects(*t.EnvironmentSelector, e.Labels) {
			return false
		}
		if t.ProjectSelector == nil {
			return e.ProjectID == a.ProjectID
		}
		labels, ok := ev.projects[e.ProjectID]
		return ok && Selects(*t.ProjectSelector, labels)
	})
}

// pickKey is selectorKey made cheaply for the common selector of one
// label: label keys and values are validated, so they hold no control
// characters to confuse the separators.
func pickKey(sel *apiv1.Selector) string {
	if sel == nil || len(sel.MatchLabels) != 1 || len(sel.MatchExpressions) > 0 {
		return selectorKey(sel)
	}
	for k, v := range sel.MatchLabels {
		return "\x00" + k + "\x01" + v
	}
	return ""
}

func (ev *Evaluator) pick(key string, picks func(apiv1.Environment) bool) []int {
	if out, ok := ev.picked[key]; ok {
		return out
	}
	out := []int{}
	for i, e := range ev.envs {
		if picks(e) {
			out = append(out, i)
		}
	}
	ev.picked[key] = out
	return out
}

func (ev *Evaluator) eachFrom(a apiv1.Assertion, src apiv1.Environment, only map[string]bool, yield func(Packet) bool) bool {
	base := Packet{FromID: src.ID, FromName: src.Name, Protocol: cmp.Or(a.Protocol, apiv1.ProtocolTCP), Port: a.Port}
	switch {
	case a.To.IsEnvironment():
		for _, i := range ev.targets(a) {
			dst := ev.envs[i]
			if dst.ID == src.ID || (only != nil && !only[src.ID] && !only[dst.ID]) {
				continue
			}
			p := base
			p.ToID, p.ToName, p.ToProjectID, p.To = dst.ID, dst.Name, dst.ProjectID, dst.Enforcement.Address
			p.Allowed = ev.between(src, dst, p.Protocol, p.Port)
			if !yield(p) {
				return false
			}
		}
	case only != nil && !only[src.ID]:
	case a.To.CIDR != "":
		prefix, err := netip.ParsePrefix(a.To.CIDR)
		if err != nil {
			return true
		}
		_, out := ev.rules(src)
		for _, addr := range slices.Compact([]netip.Addr{prefix.Masked().Addr(), highestAddr(prefix)}) {
			p := base
			p.To = addr.String()
			p.Allowed = out.allows(apiv1.Egress, p.Protocol, p.To, p.Port)
			if !yield(p) {
				return false
			}
		}
	case a.To.FQDN != "":
		eff, _ := ev.rules(src)
		p := base
		p.To = apiv1.NormalizeFQDN(a.To.FQDN)
		p.Allowed, _ = allowsName(eff, p.To, p.Protocol, p.Port)
		return yield(p)
	}
	return true
}

// verdictKey is a packet between two environments, whose answer many
// assertions share.
type verdictKey struct {
	src, dst, proto string
	port            int
}

// between answers a packet from src to dst: the sender's egress and the
// receiver's ingress must both allow it.
func (ev *Evaluator) between(src, dst apiv1.Environment, proto string, port int) bool {
	k := verdictKey{src.ID, dst.ID, proto, port}
	if v, ok := ev.verdicts[k]; ok {
		return v
	}
	_, out := ev.rules(src)
	v := out.allows(apiv1.Egress, proto, dst.Enforcement.Address, port)
	if v {
		_, in := ev.rules(dst)
		v = in.allows(apiv1.Ingress, proto, src.Enforcement.Address, port)
	}
	ev.verdicts[k] = v
	return v
}

// allows is Check's verdict alone. The
// evaluator asks once per distinct packet (verdicts), so explanations
// built and dropped here cost little.
func (r *Ruleset) allows(direction, proto, addr string, port int) bool {
	return r.Check(apiv1.CheckRequest{Direction: direction, Protocol: proto, Address: addr, Port: port}).Allowed
}

// Explain is why the rules answer p as they do, each side that decides
// in the check engine's words.
func (ev *Evaluator) Explain(p Packet) string {
	src, ok := ev.env(p.FromID)
	if !ok {
		return ""
	}
	eff, out := ev.rules(src)
	if p.ToID == "" && isAddress(p.To) {
		res := out.Check(apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: p.Protocol, Address: p.To, Port: p.Port})
		return "sender's egress: " + res.Reason
	}
	if p.ToID == "" {
		_, why := allowsName(eff, p.To, p.Protocol, p.Port)
		return why
	}
	egress := out.Check(apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: p.Protocol, Address: p.To, Port: p.Port})
	why := "sender's egress: " + egress.Reason
	if dst, ok := ev.env(p.ToID); ok && egress.Allowed {
		_, in := ev.rules(dst)
		ingress := in.Check(apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: p.Protocol, Address: src.Enforcement.Address, Port: p.Port})
		why += "; receiver's ingress: " + ingress.Reason
	}
	return why
}

// isAddress reports whether s is an address, not a host name.
func isAddress(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (ev *Evaluator) env(id string) (apiv1.Environment, bool) {
	i, ok := slices.BinarySearchFunc(ev.envs, id, func(e apiv1.Environment, id string) int { return cmp.Compare(e.ID, id) })
	if !ok {
		return apiv1.Environment{}, false
	}
	return ev.envs[i], true
}

// highestAddr is the highest address of prefix.
func highestAddr(prefix netip.Prefix) netip.Addr {
	b := prefix.Masked().Addr().AsSlice()
	for i := prefix.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// allowsName answers egress to a host name from the effective rules: a
// rule allows it when its ports do and it lists no peers or an fqdn peer
// whose pattern matches. Named ports never resolve for a name.
func allowsName(eff apiv1.EffectivePolicy, name, proto string, port int) (bool, string) {
	var allowing []apiv1.Match
	for _, r := range eff.Egress {
		portOK := len(r.Ports) == 0 || slices.ContainsFunc(apiv1.NormalizePorts(r.Ports), func(p apiv1.Port) bool {
			return p.PortName == "" && portAllows(p, proto, port)
		})
		peerOK := len(r.Peers) == 0 || slices.ContainsFunc(r.Peers, func(p apiv1.EffectivePeer) bool {
			return p.FQDN != "" && apiv1.MatchFQDN(apiv1.NormalizeFQDN(p.FQDN), name)
		})
		if portOK && peerOK {
			allowing = append(allowing, apiv1.Match{PolicyID: r.PolicyID, PolicyName: r.PolicyName, Direction: apiv1.Egress, RuleIndex: r.RuleIndex})
		}
	}
	if len(allowing) > 0 {
		m := allowing[0]
		return true, fmt.Sprintf("sender's egress: allowed by rule %d of %s", m.RuleIndex, cmp.Or(m.PolicyName, m.PolicyID))
	}
	return false, fmt.Sprintf("sender's egress: no rule allows %s to %s", packetName(proto, port), name)
}

// portAllows applies one normalized port entry; icmp has no ports.
func portAllows(p apiv1.Port, proto string, port int) bool {
	switch {
	case p.Protocol != proto:
		return false
	case proto == apiv1.ProtocolICMP || p.Port == nil:
		return true
	case p.EndPort == nil:
		return port == *p.Port
	default:
		return *p.Port <= port && port <= *p.EndPort
	}
}

// packetName is "tcp/22", or "icmp".
func packetName(proto string, port int) string {
	if proto == apiv1.ProtocolICMP || port == 0 {
		return proto
	}
	return fmt.Sprintf("%s/%d", proto, port)
}

// Failing returns the first packet of a whose answer is not what a
// expects; ok is false when a holds.
func (ev *Evaluator) Failing(a apiv1.Assertion) (Packet, bool) {
	want := a.Expect == apiv1.ExpectAllow
	var failing Packet
	found := false
	ev.each(a, nil, func(p Packet) bool {
		failing, found = p, p.Allowed != want
		return !found
	})
	return failing, found
}

// Broken returns the first packet of a that a change from before to
// after breaks: not what a expects after, and what a expected before, or
// not one of a's packets before (a new environment). An assertion that
// already failed for a packet does not stop a change for it; ok is false
// when the change breaks nothing of a. only, when not nil, are the
// environments whose rules the change touches, for a change that touches
// nothing else (a policy's): packets neither from nor to one of them
// are answered as before, and are not asked.
func Broken(a apiv1.Assertion, before, after *Evaluator, only map[string]bool) (Packet, bool) {
	want := a.Expect == apiv1.ExpectAllow
	var failing []Packet
	after.each(a, only, func(p Packet) bool {
		if p.Allowed != want {
			failing = append(failing, p)
		}
		return true
	})
	if len(failing) == 0 {
		return Packet{}, false
	}
	failedBefore := map[string]bool{}
	before.each(a, only, func(p Packet) bool {
		if p.Allowed != want {
			failedBefore[p.key()] = true
		}
		return true
	})
	for _, p := range failing {
		if !failedBefore[p.key()] {
			return p, true
		}
	}
	return Packet{}, false
}

// MayAllow reports whether some enforced rule of p could allow a packet
// on proto and port: a rule without ports, or with a named one, could. A
// change of a policy answers differently only packets that its version
// before or after may allow, as policies only add allows.
func MayAllow(p apiv1.Policy, proto string, port int) bool {
	ports := func(ps []apiv1.Port) bool {
		if len(ps) == 0 {
			return true
		}
		return slices.ContainsFunc(apiv1.NormalizePorts(ps), func(x apiv1.Port) bool {
			return x.PortName != "" || portAllows(x, proto, port)
		})
	}
	if HasType(p.PolicySpec, apiv1.Ingress) && slices.ContainsFunc(p.Ingress, func(r apiv1.IngressRule) bool { return ports(r.Ports) }) {
		return true
	}
	return HasType(p.PolicySpec, apiv1.Egress) && slices.ContainsFunc(p.Egress, func(r apiv1.EgressRule) bool { return ports(r.Ports) })
}
