package netns

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// FQDN rules: an egress peer may be a host name or a pattern
// ("*.github.com"). Nothing is allowed for it until the environment asks
// its resolver, the DNS proxy (dns.go), for a matching name: the
// addresses of the answer then join the environment's allowed set, for
// the rule's ports, for the record's TTL (clamped to Config.DNSMinTTL and
// Config.DNSMaxTTL), before the answer is sent. The kernel holds them
// as elements with timeouts of two maps per environment:
//
//	map <env>_fqdn_v4 { type ipv4_addr . inet_proto . inet_service : mark; flags interval, timeout }
//	map <env>_fqdn_v6 { type ipv6_addr . inet_proto . inet_service : mark; flags interval, timeout }
//	set <env>_fqdn_epoch { type mark }    one element: the environment's epoch
//
// A flow the environment starts whose destination is in a map has its
// conntrack mark set to the element's value, the epoch, on its first
// packet, and every packet of a flow whose mark is the current epoch
// passes (<env>_egress, nft.go). So when a TTL runs out, new connections
// are refused and established ones continue; when a policy change alters
// the environment's fqdn rules, the epoch changes in the same
// transaction as the rules, the maps are refilled from what the
// environment resolved, and every flow an fqdn rule let in before is
// judged again by its first packet's fate: it stops unless a static rule
// allows it. (Flows of fqdn rules that did not change stop too: they are
// re-admitted by the environment's next connection.)
//
// The driver keeps, per environment, a cache of what it committed (name
// to addresses, address to protocol and port cells with their expiry):
// Check answers from it as the kernel would, and the effective policy
// shows it. Addresses inside the environments' pools are never added: an
// fqdn rule reaches the outside; environment_selector reaches
// environments. After a restart the maps are emptied (the names are not
// recorded in the kernel): established flows continue, new ones need the
// name resolved again.

// Defaults for the TTL bounds.
const (
	DefaultDNSMinTTL = 30 * time.Second
	DefaultDNSMaxTTL = time.Hour
)

// maxNamesPerEnv bounds the names an environment's cache holds: a name
// beyond it is answered, but its addresses are not allowed (SERVFAIL
// would be no better, and the cache must not grow without bound).
const maxNamesPerEnv = 4096

const (
	fqdnV4    = "fqdn_v4"
	fqdnV6    = "fqdn_v6"
	fqdnEpoch = "fqdn_epoch"
)

// fqdnSets are env's fqdn maps (v4, v6) and epoch set in table t, with
// IDs clear of the rule sets' and the record's (nft.go).
func fqdnSets(t *nftables.Table, env string) [3]*nftables.Set {
	var out [3]*nftables.Set
	base := uint32(len(setLayout) + 2) //nolint:gosec // G115: setLayout holds 8 sets
	for fam := range 2 {
		out[fam] = &nftables.Set{
			Table: t, ID: base + uint32(fam), Name: envObject(env, [2]string{fqdnV4, fqdnV6}[fam]), //nolint:gosec // G115: 0 or 1
			KeyType:       nftables.MustConcatSetType(keyTypes[fam], nftables.TypeInetProto, nftables.TypeInetService),
			Concatenation: true, Interval: true, HasTimeout: true, IsMap: true, DataType: nftables.TypeMark,
		}
	}
	out[2] = &nftables.Set{Table: t, ID: base + 2, Name: envObject(env, fqdnEpoch), KeyType: nftables.TypeMark}
	return out
}

// fqdnJudgeRules follow the judge rules of <env>_egress: a new flow to
// an address in the maps takes the element's epoch as its conntrack
// mark, and a flow marked with the current epoch passes.
func fqdnJudgeRules(sets [3]*nftables.Set) []chainRule {
	nfproto := [2]byte{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6}
	daddr := [2]string{"ct original ip daddr", "ct original ip6 daddr"}
	var rules []chainRule
	for fam := range 2 {
		next := uint32(reg32_00 + 1 + 3*fam) //nolint:gosec // G115: 0 or 1
		rules = append(rules, chainRule{
			fmt.Sprintf("meta nfproto %s ct state new ct mark set %s . ct protocol . ct original proto-dst map @%s",
				[2]string{"ipv4", "ipv6"}[fam], daddr[fam], sets[fam].Name),
			[]expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto[fam]}},
				&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
					Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitNEW), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
				&expr.Ct{Key: expr.CtKeyDST, Register: reg1, Direction: 0},
				&expr.Ct{Key: expr.CtKeyPROTOCOL, Register: next},
				&expr.Ct{Key: expr.CtKeyPROTODST, Register: next + 1, Direction: 0},
				&expr.Lookup{SourceRegister: reg1, SetName: sets[fam].Name, SetID: sets[fam].ID, IsDestRegSet: true, DestRegister: reg1},
				&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true},
			},
		})
	}
	return append(rules, chainRule{fmt.Sprintf("ct mark @%s accept", sets[2].Name), []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, SetName: sets[2].Name, SetID: sets[2].ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
}

// fqdnRule is an egress rule with fqdn peers.
type fqdnRule struct {
	patterns []string
	match    apiv1.Match
}

// cell is a box of protocol and port space that every fqdn rule either
// covers whole or not at all, so that the elements of one address never
// overlap: an address's elements are the cells its rules cover.
type cell struct {
	protoLo, protoHi uint8
	ports            portSpan
	rules            []int // indices into fqdnPolicy.rules
}

// fqdnPolicy is what an applied policy says about names.
type fqdnPolicy struct {
	rules []fqdnRule
	cells [2][]cell // by family
	// open is true when the egress rules allow some address outside the
	// pools through a CIDR (or any) peer: the environment could reach
	// that address anyway, so every name resolves; otherwise only names
	// an fqdn rule matches do.
	open bool
	// key identifies the rules and cells: the epoch changes when it does.
	key string
}

// compileFQDN extracts p's fqdn rules; rs is p rendered, pools the
// environments' address pools.
func compileFQDN(p apiv1.EffectivePolicy, rs *ruleset, pools []netip.Prefix) (*fqdnPolicy, error) {
	fp := &fqdnPolicy{open: reachesOutside(rs, pools)}
	var boxes [2][][]cell // per family, per rule: its boxes (rules unset)
	var key strings.Builder
	for i, r := range p.Egress {
		var patterns []string
		for _, peer := range r.Peers {
			if peer.FQDN != "" {
				patterns = append(patterns, apiv1.NormalizeFQDN(peer.FQDN))
			}
		}
		if len(patterns) == 0 {
			continue
		}
		fp.rules = append(fp.rules, fqdnRule{patterns: patterns, match: apiv1.Match{PolicyID: r.PolicyID, PolicyName: r.PolicyName, Direction: apiv1.Egress, RuleIndex: r.RuleIndex}})
		fmt.Fprintf(&key, "%d:%s/%d:%s:", i, r.PolicyID, r.RuleIndex, strings.Join(patterns, ","))
		for fam := range 2 {
			var bs []cell
			if len(r.Ports) == 0 {
				bs = append(bs, cell{protoLo: 0, protoHi: 255, ports: allPorts})
			}
			for _, port := range r.Ports {
				proto, ports, err := protoPorts(port, fam == famV6)
				if err != nil {
					return nil, fmt.Errorf("egress[%d] (policy %s rule %d): %w", i, r.PolicyID, r.RuleIndex, err)
				}
				bs = append(bs, cell{protoLo: proto, protoHi: proto, ports: ports})
				fmt.Fprintf(&key, "%d/%d-%d;", proto, ports.lo, ports.hi)
			}
			boxes[fam] = append(boxes[fam], bs)
		}
		key.WriteString("|")
	}
	for fam := range 2 {
		fp.cells[fam] = partition(boxes[fam])
	}
	fp.key = key.String()
	return fp, nil
}

// partition cuts protocol and port space along every edge of the rules'
// boxes, and keeps the cells some rule covers, with the rules that do.
func partition(rules [][]cell) []cell {
	var protoCuts, portCuts []int
	for _, bs := range rules {
		for _, b := range bs {
			protoCuts = append(protoCuts, int(b.protoLo), int(b.protoHi)+1)
			portCuts = append(portCuts, int(b.ports.lo), int(b.ports.hi)+1)
		}
	}
	slices.Sort(protoCuts)
	slices.Sort(portCuts)
	protoCuts, portCuts = slices.Compact(protoCuts), slices.Compact(portCuts)
	var out []cell
	for i := 0; i+1 < len(protoCuts); i++ {
		for j := 0; j+1 < len(portCuts); j++ {
			c := cell{protoLo: uint8(protoCuts[i]), protoHi: uint8(protoCuts[i+1] - 1), //nolint:gosec // G115: cuts are within 0-256
				ports: portSpan{uint16(portCuts[j]), uint16(portCuts[j+1] - 1)}} //nolint:gosec // G115: cuts are within 0-65536
			for ri, bs := range rules {
				if slices.ContainsFunc(bs, func(b cell) bool {
					return b.protoLo <= c.protoLo && c.protoHi <= b.protoHi && b.ports.lo <= c.ports.lo && c.ports.hi <= b.ports.hi
				}) {
					c.rules = append(c.rules, ri)
				}
			}
			if len(c.rules) > 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

// reachesOutside reports whether rs allows egress to some address
// outside pools.
func reachesOutside(rs *ruleset, pools []netip.Prefix) bool {
	inside := func(s span) bool {
		return slices.ContainsFunc(pools, func(p netip.Prefix) bool {
			ps := prefixSpan(p)
			return family(ps.lo) == family(s.lo) && ps.lo.Compare(s.lo) <= 0 && s.hi.Compare(ps.hi) <= 0
		})
	}
	d := rs.dirs[dirEgress]
	for fam := range 2 {
		for _, s := range d.any[fam] {
			if !inside(s) {
				return true
			}
		}
		for _, b := range d.l4[fam] {
			if !inside(b.addr) {
				return true
			}
		}
	}
	return false
}

// matching returns the indices of the rules some name of chain matches,
// with the first name that matched each.
func (fp *fqdnPolicy) matching(chain []string) (rules []int, via map[int]string) {
	via = map[int]string{}
	for i, r := range fp.rules {
		for _, name := range chain {
			if slices.ContainsFunc(r.patterns, func(p string) bool { return apiv1.MatchFQDN(p, name) }) {
				rules, via[i] = append(rules, i), name
				break
			}
		}
	}
	return rules, via
}

// resolved is one name an environment asked for, with the addresses its
// answers gave and when each expires.
type resolved struct {
	chain []string // the name, then the CNAME targets that led to the addresses
	addrs map[netip.Addr]time.Time
}

// fqdnState is an environment's dynamic part: its fqdn policy, its
// epoch and what the kernel holds for its names. mu serializes the
// transactions that change the maps; Apply takes it under the
// environment's lock, the proxy alone.
type fqdnState struct {
	mu        sync.Mutex
	policy    *fqdnPolicy
	epoch     uint32
	names     map[string]*resolved
	installed map[netip.Addr][]time.Time // per address, per cell of its family: expiry committed (zero: none)
	conn      *nftables.Conn             // the proxy's, to the router namespace
}

func newFQDNState() *fqdnState {
	return &fqdnState{policy: &fqdnPolicy{}, names: map[string]*resolved{}, installed: map[netip.Addr][]time.Time{}}
}

// newEpoch draws an epoch: random, so that a flow marked by an epoch of
// an earlier process or policy never matches a later one, and never 0,
// the mark of a flow no fqdn rule admitted.
func newEpoch() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		if v := binary.NativeEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

func markKey(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// fqdnCommit is a change to an fqdnState that its transaction made real.
type fqdnCommit func()

// queueFQDN queues, on c, making env's fqdn objects follow fp: with
// declare (queueApply declared the environment's objects anew), or when fp's
// rules differ from those applied, a new epoch and maps refilled from
// the cache. The caller holds s.mu until the transaction is committed
// and the returned function applied, or abandoned.
func (s *fqdnState) queueFQDN(c *nftables.Conn, table, env string, fp *fqdnPolicy, declare bool, now time.Time) (fqdnCommit, error) {
	sets := fqdnSets(inetTable(table), env)
	if !declare && fp.key == s.policy.key {
		return func() { s.policy = fp }, nil
	}
	epoch := newEpoch()
	for _, set := range sets {
		c.FlushSet(set)
	}
	if err := c.SetAddElements(sets[2], []nftables.SetElement{{Key: markKey(epoch)}}); err != nil {
		return nil, err
	}
	installed := map[netip.Addr][]time.Time{}
	names := map[string]*resolved{}
	var elems [2][]nftables.SetElement
	for name, r := range s.names {
		rules, _ := fp.matching(r.chain)
		if len(rules) == 0 {
			continue
		}
		names[name] = r
	}
	for a := range addressesOf(names, now) {
		exp := desiredExpiry(fp, names, a, now)
		installed[a] = exp
		elems[family(a)] = append(elems[family(a)], cellElements(fp, a, exp, nil, epoch, now)...)
	}
	for fam := range 2 {
		for chunk := range slices.Chunk(elems[fam], elementsPerMessage) {
			if err := c.SetAddElements(sets[fam], chunk); err != nil {
				return nil, fmt.Errorf("set %s: %w", sets[fam].Name, err)
			}
		}
	}
	return func() { s.policy, s.epoch, s.names, s.installed = fp, epoch, names, installed }, nil
}

// addressesOf yields the unexpired addresses of names.
func addressesOf(names map[string]*resolved, now time.Time) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, r := range names {
		for a, exp := range r.addrs {
			if exp.After(now) {
				out[a] = true
			}
		}
	}
	return out
}

// desiredExpiry is, for each cell of a's family, how long the names that
// resolved to a allow it: the latest expiry of a among the names whose
// rules cover the cell.
func desiredExpiry(fp *fqdnPolicy, names map[string]*resolved, a netip.Addr, now time.Time) []time.Time {
	cells := fp.cells[family(a)]
	out := make([]time.Time, len(cells))
	for _, r := range names {
		exp, ok := r.addrs[a]
		if !ok || !exp.After(now) {
			continue
		}
		rules, _ := fp.matching(r.chain)
		for i, c := range cells {
			if exp.After(out[i]) && slices.ContainsFunc(c.rules, func(ri int) bool { return slices.Contains(rules, ri) }) {
				out[i] = exp
			}
		}
	}
	return out
}

// cellElements are a's elements for the cells whose desired expiry is
// later than what have says the kernel holds (nil: nothing), each with
// its time left as its timeout.
func cellElements(fp *fqdnPolicy, a netip.Addr, want, have []time.Time, epoch uint32, now time.Time) []nftables.SetElement {
	var out []nftables.SetElement
	for i, c := range fp.cells[family(a)] {
		if !want[i].After(now) || (have != nil && !want[i].After(have[i])) {
			continue
		}
		// The kernel counts in milliseconds; rounding up keeps it from
		// expiring an element before the cache does.
		left := want[i].Sub(now).Truncate(time.Millisecond) + time.Millisecond
		out = append(out, nftables.SetElement{
			Key:     concatKey(a.AsSlice(), c.protoLo, c.ports.lo),
			KeyEnd:  concatKey(a.AsSlice(), c.protoHi, c.ports.hi),
			Val:     markKey(epoch),
			Timeout: left,
		})
	}
	return out
}

// answer is what the proxy learned from one answer: the names from the
// question to the records (CNAME targets included) and the addresses
// with their clamped TTLs.
type answer struct {
	chain []string
	addrs map[netip.Addr]time.Duration
}

// learn commits, through the router namespace's nftables, the elements
// ans adds to env's maps, and records them; it returns once the kernel
// holds them, so that the environment's first packet to an address
// passes. slack is how much later than what the kernel holds an expiry
// must be to be sent again: answers repeated within it cost no
// transaction.
func (s *fqdnState) learn(d *Driver, env string, ans answer, now time.Time, slack time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fp := s.policy
	if rules, _ := fp.matching(ans.chain); len(rules) == 0 || len(ans.addrs) == 0 || s.epoch == 0 {
		return nil
	}
	s.prune(now)
	name := ans.chain[0]
	r := s.names[name]
	if r == nil {
		if len(s.names) >= maxNamesPerEnv {
			return fmt.Errorf("environment %s holds %d names: no more are allowed until some expire", env, maxNamesPerEnv)
		}
		r = &resolved{addrs: map[netip.Addr]time.Time{}}
	}
	// The cache is changed only once the kernel holds what it says.
	next := &resolved{chain: ans.chain, addrs: maps(r.addrs)}
	for a, ttl := range ans.addrs {
		if exp := now.Add(ttl); exp.After(next.addrs[a]) {
			next.addrs[a] = exp
		}
	}
	names := maps(s.names)
	names[name] = next
	var elems [2][]nftables.SetElement
	installed := map[netip.Addr][]time.Time{}
	for a := range ans.addrs {
		want := desiredExpiry(fp, names, a, now)
		have := s.installed[a]
		if have == nil {
			have = make([]time.Time, len(want))
		}
		for i := range have {
			if have[i].Add(slack).After(want[i]) && have[i].After(now) {
				want[i] = have[i] // close enough: not sent again
			}
		}
		installed[a] = want
		elems[family(a)] = append(elems[family(a)], cellElements(fp, a, want, have, s.epoch, now)...)
	}
	if len(elems[0])+len(elems[1]) > 0 {
		if err := s.commit(d, env, elems); err != nil {
			return err
		}
	}
	s.names = names
	for a, exp := range installed {
		s.installed[a] = exp
	}
	return nil
}

// commit adds elems to env's maps in one transaction.
func (s *fqdnState) commit(d *Driver, env string, elems [2][]nftables.SetElement) error {
	if s.conn == nil {
		r, err := d.routerHandle()
		if err != nil {
			return err
		}
		c, err := nftables.New(nftables.WithNetNSFd(int(r.ns)), nftables.AsLasting())
		if err != nil {
			return err
		}
		s.conn = c
	}
	sets := fqdnSets(inetTable(d.names.table()), env)
	for fam := range 2 {
		for chunk := range slices.Chunk(elems[fam], elementsPerMessage) {
			if err := s.conn.SetAddElements(sets[fam], chunk); err != nil {
				s.closeConn()
				return err
			}
		}
	}
	if err := s.conn.Flush(); err != nil {
		s.closeConn()
		return fmt.Errorf("add the answer's addresses: %w", err)
	}
	return nil
}

func (s *fqdnState) closeConn() {
	if s.conn != nil {
		_ = s.conn.CloseLasting() // nothing to act on
		s.conn = nil
	}
}

// close releases the proxy's connection.
func (s *fqdnState) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeConn()
}

// prune forgets what has expired; the caller holds s.mu.
func (s *fqdnState) prune(now time.Time) {
	for name, r := range s.names {
		live := false
		for _, exp := range r.addrs {
			live = live || exp.After(now)
		}
		if !live {
			delete(s.names, name)
		}
	}
	for a, exps := range s.installed {
		if !slices.ContainsFunc(exps, func(t time.Time) bool { return t.After(now) }) {
			delete(s.installed, a)
		}
	}
}

func maps[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// allows answers whether the kernel lets a new flow to a, by protocol
// and port, through an fqdn rule now: the rule and the name that
// admitted it, or ok false.
func (s *fqdnState) allows(a netip.Addr, proto uint8, port uint16, now time.Time) (m apiv1.Match, name string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	exps := s.installed[a]
	fp := s.policy
	for i, c := range fp.cells[family(a)] {
		if i >= len(exps) || !exps[i].After(now) || proto < c.protoLo || proto > c.protoHi || port < c.ports.lo || port > c.ports.hi {
			continue
		}
		// The first rule, in merged order, of a name that resolved to a.
		best := -1
		for n, r := range s.names {
			exp, has := r.addrs[a]
			if !has || !exp.After(now) {
				continue
			}
			rules, via := fp.matching(r.chain)
			for _, ri := range rules {
				if slices.Contains(c.rules, ri) && (best < 0 || ri < best || (ri == best && n < name)) {
					best, name = ri, via[ri]
				}
			}
		}
		if best >= 0 {
			return fp.rules[best].match, name, true
		}
	}
	return m, "", false
}

// lookup returns the unexpired addresses name resolved to.
func (s *fqdnState) lookup(name string, now time.Time) []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.names[name]
	if r == nil {
		return nil
	}
	var out []netip.Addr
	for a, exp := range r.addrs {
		if exp.After(now) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// resolvedNames lists the names pattern matches that the environment
// resolved and whose addresses are allowed now.
func (s *fqdnState) resolvedNames(pattern string, now time.Time) []apiv1.ResolvedName {
	s.mu.Lock()
	defer s.mu.Unlock()
	pattern = apiv1.NormalizeFQDN(pattern)
	var out []apiv1.ResolvedName
	for name, r := range s.names {
		if !slices.ContainsFunc(r.chain, func(n string) bool { return apiv1.MatchFQDN(pattern, n) }) {
			continue
		}
		rn := apiv1.ResolvedName{Name: name, Addresses: []string{}}
		var addrs []netip.Addr
		for a, exp := range r.addrs {
			if exp.After(now) {
				addrs = append(addrs, a)
				if exp.After(rn.Expires) {
					rn.Expires = exp.UTC()
				}
			}
		}
		if len(addrs) == 0 {
			continue
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, a := range addrs {
			rn.Addresses = append(rn.Addresses, a.String())
		}
		out = append(out, rn)
	}
	slices.SortFunc(out, func(a, b apiv1.ResolvedName) int { return strings.Compare(a.Name, b.Name) })
	return out
}
