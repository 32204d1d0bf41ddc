package netns

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Every environment's rules live in the router namespace, out of the
// environment's reach, in one inet table shared by all environments (see
// guard.go for its shared part and the bridge table):
//
//	sets   <env>_{ingress,egress}_{any,ports}_{v4,v6}  the rendered ruleset
//	set    <env>_applied                             the effective policy the sets hold
//	chains <env>_from, <env>_to                      packets from and to the environment's port
//	chains <env>_ingress, <env>_egress               fixed rules that consult the sets
//	maps   <env>_fqdn_{v4,v6}, set <env>_fqdn_epoch  what fqdn rules allow now (fqdn.go)
//
// The bridge passes every IP packet it carries through the inet hooks
// (br_netfilter), with conntrack: the prerouting chain jumps to <env>_from
// by a packet's source address, the postrouting chain to <env>_to by its
// destination address; the bridge table ties each address to its port. This kernel has no
// conntrack for the bridge family (nf_conntrack_bridge), and the rules
// judge flows, so they cannot sit in the bridge table itself.
//
// Apply is one transaction, and touches only the environment's set
// elements that change (and its record): the rules never change after
// the environment's first one. Elements both versions have stay, so a
// packet both versions allow passes throughout, and one both deny never
// does, even while the kernel installs the new contents of interval sets
// (pipapo, which concatenations need, publishes them after the new
// generation): flushing and refilling a set in use would drop what both
// allow for as long as the commit takes. Sending only what changes also
// matters for speed: the kernel finds a set by walking every set of the
// table, which holds every environment's.

type setSpec struct {
	name  string
	dir   int
	fam   int
	ports bool
}

func (s setSpec) typeName() string {
	addr := [2]string{"ipv4_addr", "ipv6_addr"}[s.fam]
	if s.ports {
		return addr + " . inet_proto . inet_service"
	}
	return addr
}

// envObject names an object of environment env in the router's table.
func envObject(env, name string) string { return env + "_" + name }

func setName(dir, fam int, ports bool) string {
	kind := "any"
	if ports {
		kind = "ports"
	}
	return fmt.Sprintf("%s_%s_v%s", [2]string{"ingress", "egress"}[dir], kind, [2]string{"4", "6"}[fam])
}

// setLayout lists the rule sets in a fixed order; setIndex finds one.
var setLayout = func() []setSpec {
	var out []setSpec
	for dir := range 2 {
		for _, ports := range []bool{false, true} {
			for fam := range 2 {
				out = append(out, setSpec{setName(dir, fam, ports), dir, fam, ports})
			}
		}
	}
	return out
}()

func setIndex(dir, fam int, ports bool) int {
	return slices.IndexFunc(setLayout, func(s setSpec) bool { return s.dir == dir && s.fam == fam && s.ports == ports })
}

const recordSetName = "applied"

var keyTypes = [2]nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIP6Addr}

// layoutSets declares env's rule sets in table t. IDs are set here, not
// by the library, whose allocator is a global counter that concurrent
// batches would race on; IDs only need to be unique within one batch.
func layoutSets(t *nftables.Table, env string) []*nftables.Set {
	out := make([]*nftables.Set, len(setLayout))
	for i, s := range setLayout {
		set := &nftables.Set{Table: t, ID: uint32(i + 1), Name: envObject(env, s.name), KeyType: keyTypes[s.fam], Interval: true}
		if s.ports {
			set.KeyType = nftables.MustConcatSetType(keyTypes[s.fam], nftables.TypeInetProto, nftables.TypeInetService)
			set.Concatenation = true
		}
		out[i] = set
	}
	return out
}

// elements encodes a set's contents. Plain interval sets take a start
// element and an interval-end element one past the last address;
// concatenated ones take each box's first and last key.
func (rs *ruleset) elements(s setSpec) []nftables.SetElement {
	return slices.Concat(rs.intervals(s)...)
}

// intervals encodes a set's contents interval by interval: the elements
// of one span or box, which only go in or out together (the kernel
// refuses an interval's end inside another interval).
func (rs *ruleset) intervals(s setSpec) [][]nftables.SetElement {
	d := rs.dirs[s.dir]
	var out [][]nftables.SetElement
	if !s.ports {
		for _, sp := range d.any[s.fam] {
			iv := []nftables.SetElement{{Key: sp.lo.AsSlice()}}
			if end, ok := after(sp.hi); ok {
				iv = append(iv, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
			}
			out = append(out, iv)
		}
		return out
	}
	for _, b := range d.l4[s.fam] {
		out = append(out, []nftables.SetElement{{
			Key:    concatKey(b.addr.lo.AsSlice(), b.proto, b.ports.lo),
			KeyEnd: concatKey(b.addr.hi.AsSlice(), b.proto, b.ports.hi),
		}})
	}
	return out
}

// concatKey lays out "address . protocol . port" as the kernel does: each
// field padded to a multiple of four bytes, the port in network order.
func concatKey(addr []byte, proto uint8, port uint16) []byte {
	k := append(slices.Clone(addr), proto, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(k[len(addr)+4:], port)
	return k
}

// chainRule is one rule, with its nft spelling.
type chainRule struct {
	text  string
	exprs []expr.Any
}

// chainSpec is one of an environment's chains: the two its port's
// packets enter by, and the two that judge a flow by the direction its
// first packet took.
type chainSpec struct {
	name  string
	rules func(env string, sets []*nftables.Set) []chainRule
}

// Every packet is judged by its flow: by who sent the flow's first packet
// (conntrack's original direction) and to or from whom, read from the
// conntrack entry, never by "established" alone. A reply is allowed
// because the flow it answers is allowed now; when an allow is revoked,
// the flows it let in stop with the same transaction, and a packet's fate
// is always what Check says of its flow.
var chainLayout = []chainSpec{
	{name: apiv1.Ingress, rules: func(_ string, sets []*nftables.Set) []chainRule { return judgeRules(dirIngress, sets) }},
	{name: apiv1.Egress, rules: func(env string, sets []*nftables.Set) []chainRule {
		return append(judgeRules(dirEgress, sets), fqdnJudgeRules(fqdnSets(nil, env))...)
	}},
	{name: chainFrom, rules: func(env string, _ []*nftables.Set) []chainRule { return portRules(env, dirEgress) }},
	{name: chainTo, rules: func(env string, _ []*nftables.Set) []chainRule { return portRules(env, dirIngress) }},
}

const (
	chainFrom = "from" // packets the environment sends
	chainTo   = "to"   // packets sent to it
)

// Registers: NFT_REG_1 is 16 bytes wide, the NFT_REG32_xx that follow it
// are 4 bytes each, so a concatenation continues right after the address.
const (
	reg1     = 1
	reg32_00 = 8
)

// portRules are the rules of env's chain for packets it receives (dir
// ingress) or sends (dir egress): each goes to the chain for its flow's
// direction, and whatever no allow accepts is dropped. A flow the remote
// end started is ingress on the way in, and its replies too on the way
// out; a flow the environment started is egress both ways.
func portRules(env string, dir int) []chainRule {
	own, other := envObject(env, apiv1.Ingress), envObject(env, apiv1.Egress)
	if dir == dirEgress {
		own, other = other, own
	}
	jump := func(ctDir byte, chain string) chainRule {
		return chainRule{fmt.Sprintf("ct direction %s jump %s", [2]string{"original", "reply"}[ctDir], chain), []expr.Any{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{ctDir}},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
		}}
	}
	rules := append([]chainRule{jump(0, own), jump(1, other)}, deniedRules(env, dir)...) // flow logs (flows.go)
	if dir == dirEgress {
		rules = append(rules, refuseRules()...) // deny fast (deny.go)
	}
	return append(rules, chainRule{"drop", []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
}

// ndRule accepts IPv6 neighbour discovery, which IPv6 needs to find the
// next hop at all (ARP's job in IPv4, which the inet family never sees)
// and conntrack does not track. The bridge table checks who sends it.
func ndRule() chainRule {
	return chainRule{"icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept", []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{135}, ToData: []byte{136}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
}

// judgeRules accept a flow of direction dir whose remote end, protocol and
// destination port (all from the conntrack entry's original tuple) are
// in the direction's sets.
func judgeRules(dir int, sets []*nftables.Set) []chainRule {
	remote, remoteText := expr.CtKeySRC, [2]string{"ct original ip saddr", "ct original ip6 saddr"}
	if dir == dirEgress {
		remote, remoteText = expr.CtKeyDST, [2]string{"ct original ip daddr", "ct original ip6 daddr"}
	}
	nfproto := [2]byte{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	var rules []chainRule
	for _, ports := range []bool{false, true} {
		for fam := range 2 {
			set := sets[setIndex(dir, fam, ports)]
			// The family check comes first: conntrack writes only four
			// bytes of an IPv4 address into the 16-byte register. The
			// library sends the direction as 32 bits where the kernel
			// reads 8; that reads right only for 0, original, which is
			// the only direction used here.
			exprs := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto[fam]}},
				&expr.Ct{Key: remote, Register: reg1, Direction: 0},
			}
			text := fmt.Sprintf("%s @%s accept", remoteText[fam], set.Name)
			if ports {
				next := uint32(reg32_00 + 1 + 3*fam) // the register after the address
				exprs = append(exprs,
					&expr.Ct{Key: expr.CtKeyPROTOCOL, Register: next},
					&expr.Ct{Key: expr.CtKeyPROTODST, Register: next + 1, Direction: 0},
				)
				text = fmt.Sprintf("%s . ct protocol . ct original proto-dst @%s accept", remoteText[fam], set.Name)
			}
			exprs = append(exprs, &expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID}, accept)
			rules = append(rules, chainRule{text, exprs})
		}
	}
	return rules
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// Elements go in batches of this many per message: a netlink attribute
// holds at most 64 KiB, and the largest element takes about 100 bytes.
const elementsPerMessage = 256

func inetTable(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
}

func recordSet(t *nftables.Table, env string) *nftables.Set {
	return &nftables.Set{Table: t, ID: uint32(len(setLayout) + 1), Name: envObject(env, recordSetName), KeyType: nftables.TypeInteger} //nolint:gosec // G115: setLayout holds 8 sets
}

// queueApply queues, on c, making env's objects hold rs and record: when
// old is what they hold now, by changing only the elements that differ;
// when old is nil (a new environment, or one whose objects cannot be
// accounted for), by declaring every object and replacing all it holds.
func queueApply(c *nftables.Conn, table, env string, old, rs *ruleset, record []string) error {
	t := inetTable(table)
	sets := layoutSets(t, env)
	for i, s := range sets {
		want := rs.elements(setLayout[i])
		if old == nil {
			if err := replaceSet(c, s, want); err != nil {
				return err
			}
			continue
		}
		gone, added := diffIntervals(old.intervals(setLayout[i]), rs.intervals(setLayout[i]))
		for chunk := range slices.Chunk(gone, elementsPerMessage) {
			if err := c.SetDeleteElements(s, chunk); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
		}
		for chunk := range slices.Chunk(added, elementsPerMessage) {
			if err := c.SetAddElements(s, chunk); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
		}
	}
	var recElems []nftables.SetElement
	for i, chunk := range record {
		recElems = append(recElems, nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, uint32(i)), Comment: chunk})
	}
	rec := recordSet(t, env)
	if old != nil {
		// No rule reads the record: replacing it all is harmless.
		c.FlushSet(rec)
		for chunk := range slices.Chunk(recElems, elementsPerMessage) {
			if err := c.SetAddElements(rec, chunk); err != nil {
				return err
			}
		}
		return nil
	}
	if err := replaceSet(c, rec, recElems); err != nil {
		return err
	}
	// The fqdn objects, which the egress chain names; their contents
	// are the caller's (queueFQDN).
	for _, s := range fqdnSets(t, env) {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	if err := queueDeniedObjects(c, t, env); err != nil {
		return err
	}
	for _, spec := range chainLayout {
		ch := c.AddChain(&nftables.Chain{Name: envObject(env, spec.name), Table: t})
		c.FlushChain(ch)
		for _, r := range spec.rules(env, sets) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs})
		}
	}
	return nil
}

// diffIntervals returns the elements of the intervals of old that want
// lacks, and those of the intervals of want that old lacks.
func diffIntervals(old, want [][]nftables.SetElement) (gone, added []nftables.SetElement) {
	id := func(iv []nftables.SetElement) string {
		var b strings.Builder
		for _, e := range iv {
			fmt.Fprintf(&b, "%x/%x/%v;", e.Key, e.KeyEnd, e.IntervalEnd)
		}
		return b.String()
	}
	had := map[string]bool{}
	for _, iv := range old {
		had[id(iv)] = true
	}
	keep := map[string]bool{}
	for _, iv := range want {
		if keep[id(iv)] = true; !had[id(iv)] {
			added = append(added, iv...)
		}
	}
	for _, iv := range old {
		if !keep[id(iv)] {
			gone = append(gone, iv...)
		}
	}
	return gone, added
}

// removeEnv queues, on c, deleting every object of env in the router's
// inet table, whether or not it exists. The maps that jump to its chains
// must no longer do so by then (the caller deletes those elements first,
// in the same batch). Chains go first, from the entry chains down, so
// that nothing refers to what is deleted next.
func removeEnv(c *nftables.Conn, table, env string) error {
	t := inetTable(table)
	for _, name := range []string{chainFrom, chainTo, apiv1.Ingress, apiv1.Egress} {
		c.DelChain(c.AddChain(&nftables.Chain{Name: envObject(env, name), Table: t}))
	}
	fq := fqdnSets(t, env)
	for _, s := range append(layoutSets(t, env), recordSet(t, env), fq[0], fq[1], fq[2]) {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
		c.DelSet(s)
	}
	return queueRemoveDenied(c, t, env)
}

// listChains names the chains of the inet table called table.
func listChains(c *nftables.Conn, table string) ([]string, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == table {
			out = append(out, ch.Name)
		}
	}
	return out, nil
}

// replaceSet declares s and replaces its elements with elems.
func replaceSet(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	if err := c.AddSet(s, nil); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	c.FlushSet(s)
	for chunk := range slices.Chunk(elems, elementsPerMessage) {
		if err := c.SetAddElements(s, chunk); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	return nil
}

// batchBytes is the socket buffer a batch of n set elements needs: the
// whole batch is one sendmsg, and the default buffer (about 200 KiB) would
// refuse large rulesets. It is only a cap; the kernel allocates what is
// sent.
func batchBytes(n int) int { return max(4<<20, n*256) }

// socketBuffers sets the netlink socket's buffers to size bytes.
func socketBuffers(size int) nftables.SockOption {
	return func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = raw.Control(func(fd uintptr) {
			// The FORCE variants pass the net.core.[rw]mem_max caps; they need CAP_NET_ADMIN, which the driver has.
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size); serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// The record of what was applied travels in the same transaction as the
// rules, as comments on the elements of a small set, so that after a
// restart the driver can answer Check for the rules the kernel really has.
// A comment holds at most 255 bytes.
const recordChunk = 200

// gzipWriters saves allocating a compressor (hundreds of KiB) per Apply.
var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

func encodeRecord(p apiv1.EffectivePolicy) ([]string, error) {
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if _, err := zw.Write(js); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	enc := base64.StdEncoding.EncodeToString(buf.Bytes())
	var out []string
	for len(enc) > 0 {
		n := min(recordChunk, len(enc))
		out = append(out, enc[:n])
		enc = enc[n:]
	}
	return out, nil
}

// readRecord reads back, from the inet table c sees, the effective
// policy recorded in the first of the sets called names that exists;
// found is false when there is no table or no such set.
func readRecord(c *nftables.Conn, table string, names ...string) (p apiv1.EffectivePolicy, found bool, err error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return p, false, fmt.Errorf("list tables: %w", err)
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == table })
	if i < 0 {
		return p, false, nil
	}
	var set *nftables.Set
	for _, name := range names {
		s, err := c.GetSetByName(tables[i], name)
		if err == nil {
			set = s
			break
		}
		if !errors.Is(err, unix.ENOENT) {
			return p, false, fmt.Errorf("read set %s: %w", name, err)
		}
	}
	if set == nil {
		return p, false, nil
	}
	elems, err := c.GetSetElements(set)
	if err != nil {
		return p, true, fmt.Errorf("read set %s: %w", set.Name, err)
	}
	slices.SortFunc(elems, func(a, b nftables.SetElement) int { return bytes.Compare(a.Key, b.Key) })
	var enc strings.Builder
	for _, e := range elems {
		enc.WriteString(e.Comment)
	}
	p, err = decodeRecord(enc.String())
	return p, true, err
}

func decodeRecord(enc string) (p apiv1.EffectivePolicy, err error) {
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return p, fmt.Errorf("decode record: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return p, fmt.Errorf("decode record: %w", err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		return p, fmt.Errorf("decode record: %w", err)
	}
	if err := json.Unmarshal(js, &p); err != nil {
		return p, fmt.Errorf("decode record: %w", err)
	}
	return p, nil
}
