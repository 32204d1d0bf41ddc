package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Flow logs: a record of every flow an environment opens or receives,
// built from the kernel's own accounts, in the router namespace, where
// every environment's flows pass (conntrack runs there, for the bridge).
//
// Allowed flows are conntrack's: a connection the rules let through is
// confirmed, and the kernel announces it (NEW) and its end (DESTROY, with
// its packet and byte counters: nf_conntrack_acct) on a netlink socket.
// At NEW the flow is attributed, with Check, to the policy rule that
// allows it; at DESTROY its record is written. A flow between two
// environments is two records, the sender's egress and the receiver's
// ingress. The driver reads the events every flowRead, not as each
// comes (flowevents.go says why).
//
// Denied packets never make a connection. Before an environment's chains
// refuse or drop a flow's packet (portRules), a rule counts it, twice:
//
//	counter name <env>_denied_{in,out}                       every denied packet
//	update @<env>_denied_{in,out}_v{4,6} { remote address . protocol . port counter }
//
// The sets are dynamic, with a timeout and a bound (deniedSetSize
// elements): a packet whose peer the set cannot take (full) is still in
// the total, and the difference is reported as a record without a peer,
// so the counts of a flood add up whatever it sends. The key holds the
// flow's destination port (the environment's own for ingress) and never
// the source port, which a client picks anew for every connection: the
// retries of one denied connection are one element, distinct probes are
// distinct elements. The driver reads them every second and writes what
// each gained as one record; a peer with more than
// apiv1.MaxFlowPortsPerPeer ports in one second is a scan, and becomes one
// record without a port.
//
// Allowed flows that end within the same second with the same peer,
// protocol, port and rule are one record too (a storm of short
// connections), with their count, and without a source port.
//
// Records reach the sink through a bounded queue: the packet path never
// waits for the driver (the kernel drops events a full socket cannot
// take, and the driver counts each such overflow), and the driver never
// waits for the sink (a full queue drops the batch, counted and logged).

// deniedSetSize bounds each of an environment's sets of denied peers.
const deniedSetSize = 4096

// deniedTimeout is how long a denied peer stays in its set after its last
// packet: far longer than the poll, so that an element is read after its
// last packet before it goes.
const deniedTimeout = 2 * time.Minute

// flowPoll is how often the sets are read and the records handed on.
const flowPoll = time.Second

// flowRead is how often the conntrack events queued are read.
const flowRead = 50 * time.Millisecond

// flowQueue bounds the batches waiting for the sink.
const flowQueue = 64

// maxPendingFlows bounds the open connections whose attribution the
// driver keeps between NEW and DESTROY; beyond it a flow is attributed
// at its end.
const maxPendingFlows = 1 << 18

// FlowSink receives flow records, in batches; the driver calls it from
// one goroutine, never from the packet path.
type FlowSink func([]apiv1.Flow)

// FlowStats counts what flow logging lost.
type FlowStats struct {
	// Dropped are records the queue to the sink had no room for.
	Dropped uint64
	// Overflows are the reads of the driver's socket that found the
	// kernel had dropped conntrack events it had no room for (each
	// loses an unknown number of them).
	Overflows uint64
}

func deniedName(dir int) string { return "denied_" + [2]string{"in", "out"}[dir] }

func deniedSetName(dir, fam int) string {
	return deniedName(dir) + "_v" + [2]string{"4", "6"}[fam]
}

// deniedSets declares env's sets of denied peers, numbered after the
// record set (nft.go).
func deniedSets(t *nftables.Table, env string) []*nftables.Set {
	var out []*nftables.Set
	for dir := range 2 {
		for fam := range 2 {
			out = append(out, &nftables.Set{
				Table: t, ID: uint32(len(setLayout) + 2 + len(out)), Name: envObject(env, deniedSetName(dir, fam)), //nolint:gosec // G115: a handful of sets
				KeyType:       nftables.MustConcatSetType(keyTypes[fam], nftables.TypeInetProto, nftables.TypeInetService),
				Concatenation: true, Dynamic: true, HasTimeout: true, Timeout: deniedTimeout, Counter: true, Size: deniedSetSize,
			})
		}
	}
	return out
}

func deniedCounter(t *nftables.Table, env string, dir int) *nftables.CounterObj {
	return &nftables.CounterObj{Table: t, Name: envObject(env, deniedName(dir))}
}

// queueDeniedObjects declares env's denied sets and counters, keeping
// what they hold.
func queueDeniedObjects(c *nftables.Conn, t *nftables.Table, env string) error {
	for dir := range 2 {
		c.AddObj(deniedCounter(t, env, dir))
	}
	for _, s := range deniedSets(t, env) {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	return nil
}

// queueRemoveDenied deletes env's denied sets and counters; the chains
// that use them are gone first.
func queueRemoveDenied(c *nftables.Conn, t *nftables.Table, env string) error {
	if err := queueDeniedObjects(c, t, env); err != nil {
		return err
	}
	for _, s := range deniedSets(t, env) {
		c.DelSet(s)
	}
	for dir := range 2 {
		c.DeleteObject(deniedCounter(t, env, dir))
	}
	return nil
}

// deniedRules count the packets of flows of direction dir that nothing
// accepted, in env's chain for its port's packets: the first packets of
// flows the environment starts (egress) or that are sent to it
// (ingress), before they are refused or dropped. Replies that fall
// through (a flow whose allow was revoked) are not new flows and are
// not counted.
func deniedRules(env string, dir int) []chainRule {
	remote, remoteText := expr.CtKeyDST, [2]string{"ip daddr", "ip6 daddr"}
	if dir == dirIngress {
		remote, remoteText = expr.CtKeySRC, [2]string{"ip saddr", "ip6 saddr"}
	}
	nfproto := [2]byte{unix.NFPROTO_IPV4, unix.NFPROTO_IPV6}
	t := inetTable("")
	sets := deniedSets(t, env)
	var rules []chainRule
	for fam := range 2 {
		set := sets[2*dir+fam]
		next := uint32(reg32_00 + 1 + 3*fam) // the register after the address (see judgeRules)
		counter := envObject(env, deniedName(dir))
		rules = append(rules, chainRule{
			fmt.Sprintf("meta nfproto %s ct direction original counter name %s update @%s { ct original %s . ct protocol . ct original proto-dst counter }",
				[2]string{"ipv4", "ipv6"}[fam], counter, set.Name, remoteText[fam]),
			[]expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto[fam]}},
				&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0}},
				&expr.Ct{Key: remote, Register: reg1, Direction: 0},
				&expr.Ct{Key: expr.CtKeyPROTOCOL, Register: next},
				&expr.Ct{Key: expr.CtKeyPROTODST, Register: next + 1, Direction: 0},
				// The total first: it counts the packets the set has no
				// room for, after which the update ends the rule.
				&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: counter},
				&expr.Dynset{SrcRegKey: reg1, SetName: set.Name, SetID: set.ID, Operation: uint32(unix.NFT_DYNSET_OP_UPDATE),
					Exprs: []expr.Any{&expr.Counter{}}},
			},
		})
	}
	return rules
}

// flowLog is the driver's flow logging while it runs.
type flowLog struct {
	d        *Driver
	r        *router
	sink     FlowSink
	nft      *nftables.Conn
	reap     *conntrack.Conn // for dumps that make the kernel forget expired flows
	quit     chan struct{}
	consumed chan struct{} // closed when consume has read its last events
	primed   chan struct{} // closed when the poller has read the counters' start
	queue    chan []apiv1.Flow
	wg       sync.WaitGroup

	dropped, overflows atomic.Uint64

	mu      sync.Mutex
	pending map[uint32][]apiv1.Flow // by conntrack id: the attributed records of open flows
	window  map[flowKey]*apiv1.Flow // records of this second, aggregated

	// Used by the poller only.
	denied  map[string]*deniedState // by environment name
	priming bool                    // reading the counters' start: no records

	addrMu    sync.Mutex
	addrs     map[netip.Addr]flowEnv
	addrsAt   time.Time
	addrsMiss time.Time
}

// flowEnv is an environment as flow records name it.
type flowEnv struct {
	id, name string
	addrs    [2]netip.Addr // IPv4, IPv6 (invalid without Pool6)
}

// flowKey is what records of one second have in common to be one.
type flowKey struct {
	env, dir, verdict, proto string
	src, dst                 string
	dstPort                  int
	policy, fqdn             string
	rule                     int
}

// deniedState is what the poller last read of an environment's denied
// counters.
type deniedState struct {
	total   [2]nftables.CounterObj
	elems   [2]map[string][2]uint64 // by direction, then set name + key: packets, bytes
	balance [2]int64                // packets in the totals not yet in a record
	pending [2]int64                // of those, what the last read's sets did not explain
	moved   [2]time.Time            // when the total last gained
	polled  time.Time
}

// StartFlowLogs starts flow logging: records go to sink until Close. It
// sets the router namespace's conntrack accounting and timestamps, which
// the records need. Starting it twice is an error.
func (d *Driver) StartFlowLogs(sink FlowSink) error {
	fl, err := d.startFlowLogs(sink)
	if err != nil {
		return err
	}
	<-fl.primed // after d.mu, which the poller reads the environments under
	d.log.Info("flow logs on")
	return nil
}

func (d *Driver) startFlowLogs(sink FlowSink) (*flowLog, error) {
	r, err := d.routerHandle()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.flows != nil {
		return nil, errors.New("netns: flow logs are already on")
	}
	for _, key := range []string{"net.netfilter.nf_conntrack_acct", "net.netfilter.nf_conntrack_timestamp"} {
		if err := writeSysctl(r.ns, key, "1"); err != nil {
			return nil, fmt.Errorf("netns: flow logs: %w", err)
		}
	}
	fl := &flowLog{
		d: d, r: r, sink: sink, quit: make(chan struct{}), consumed: make(chan struct{}), primed: make(chan struct{}), queue: make(chan []apiv1.Flow, flowQueue),
		pending: map[uint32][]apiv1.Flow{}, window: map[flowKey]*apiv1.Flow{}, denied: map[string]*deniedState{},
	}
	if fl.nft, err = nftables.New(nftables.WithNetNSFd(int(r.ns)), nftables.AsLasting()); err != nil {
		return nil, fmt.Errorf("netns: flow logs: %w", err)
	}
	if fl.reap, err = conntrack.Dial(&netlink.Config{NetNS: int(r.ns)}); err != nil {
		_ = fl.nft.CloseLasting()
		return nil, fmt.Errorf("netns: flow logs: conntrack: %w", err)
	}
	events, err := openCtEvents(r.ns)
	if err != nil {
		_ = fl.nft.CloseLasting()
		_ = fl.reap.Close()
		return nil, fmt.Errorf("netns: flow logs: %w", err)
	}
	fl.wg.Add(3)
	go fl.consume(events)
	go fl.poll()
	go fl.deliver()
	d.flows = fl
	return fl, nil
}

// FlowStats counts what flow logging lost since it started.
func (d *Driver) FlowStats() FlowStats {
	d.mu.RLock()
	fl := d.flows
	d.mu.RUnlock()
	if fl == nil {
		return FlowStats{}
	}
	return FlowStats{Dropped: fl.dropped.Load(), Overflows: fl.overflows.Load()}
}

// consume turns conntrack events into records until the driver stops,
// draining the socket every flowRead, and once more when it stops.
func (fl *flowLog) consume(c *ctEvents) {
	defer fl.wg.Done()
	defer close(fl.consumed)
	defer c.close()
	tick := time.NewTicker(flowRead)
	defer tick.Stop()
	var logged time.Time // the last read error logged: at most one a second
	for {
		more, overflowed, err := c.drain(fl.event)
		if overflowed {
			if n := fl.overflows.Add(1); n == 1 || n%100 == 0 {
				fl.d.log.Warn("flow logs: conntrack events overflowed the socket; some allowed flows have no record", "overflows_total", n)
			}
		}
		if err != nil && time.Since(logged) > time.Second {
			fl.d.log.Error("flow logs: read conntrack events", "err", err)
			logged = time.Now()
		}
		if more {
			// Behind: read on at once, unless the driver stops.
			select {
			case <-fl.quit:
				return
			default:
				continue
			}
		}
		select {
		case <-fl.quit:
			_, _, _ = c.drain(fl.event)
			return
		case <-tick.C:
		}
	}
}

// event handles one conntrack event.
func (fl *flowLog) event(ev conntrack.Event) {
	f := ev.Flow
	if f == nil {
		return
	}
	switch ev.Type {
	case conntrack.EventNew:
		recs := fl.attribute(f)
		if len(recs) == 0 {
			return
		}
		fl.mu.Lock()
		if len(fl.pending) < maxPendingFlows {
			fl.pending[f.ID] = recs
		}
		fl.mu.Unlock()
	case conntrack.EventDestroy:
		fl.mu.Lock()
		recs, ok := fl.pending[f.ID]
		delete(fl.pending, f.ID)
		fl.mu.Unlock()
		if !ok {
			recs = fl.attribute(f)
		}
		end := f.Timestamp.Stop
		if end.IsZero() {
			end = time.Now()
		}
		for _, rec := range recs {
			rec.Packets = int64(f.CountersOrig.Packets + f.CountersReply.Packets) //nolint:gosec // G115: counters fit
			rec.Bytes = int64(f.CountersOrig.Bytes + f.CountersReply.Bytes)       //nolint:gosec // G115: counters fit
			rec.LastSeen = end.UTC()
			fl.add(rec)
		}
	}
}

// attribute builds the records of a flow the rules allowed: one for each
// environment it starts from or goes to, with the rule that allows it.
func (fl *flowLog) attribute(f *conntrack.Flow) []apiv1.Flow {
	t := f.TupleOrig
	src, dst := t.IP.SourceAddress.Unmap(), t.IP.DestinationAddress.Unmap()
	start := f.Timestamp.Start
	if start.IsZero() {
		start = time.Now()
	}
	proto := protocolName(t.Proto.Protocol)
	ported := t.Proto.Protocol == unix.IPPROTO_TCP || t.Proto.Protocol == unix.IPPROTO_UDP
	base := apiv1.Flow{Protocol: proto, SrcAddress: src.String(), DstAddress: dst.String(), Verdict: apiv1.VerdictAllowed, Count: 1, FirstSeen: start.UTC()}
	if ported {
		base.SrcPort, base.DstPort = int(t.Proto.SourcePort), int(t.Proto.DestinationPort)
	}
	var out []apiv1.Flow
	for _, side := range []struct {
		dir    string
		local  netip.Addr
		remote netip.Addr
	}{{apiv1.Egress, src, dst}, {apiv1.Ingress, dst, src}} {
		e, ok := fl.envAt(side.local)
		if !ok {
			continue
		}
		rec := base
		rec.EnvironmentID, rec.Direction = e.id, side.dir
		res, err := fl.d.Check(context.Background(), e.id, apiv1.CheckRequest{Direction: side.dir, Protocol: proto, Address: side.remote.String(), Port: rec.DstPort})
		if err == nil && res.Matched != nil {
			rule := res.Matched.RuleIndex
			rec.PolicyID, rec.Rule = res.Matched.PolicyID, &rule
		}
		if err == nil {
			rec.FQDN = res.FQDN
		}
		out = append(out, rec)
	}
	return out
}

func protocolName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return apiv1.ProtocolTCP
	case unix.IPPROTO_UDP:
		return apiv1.ProtocolUDP
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		return apiv1.ProtocolICMP
	}
	return strconv.Itoa(int(p))
}

// envAt finds the environment holding address a. The map is rebuilt
// every poll, and on a miss at most ten times a second (traffic of the
// router's own misses every time).
func (fl *flowLog) envAt(a netip.Addr) (flowEnv, bool) {
	fl.addrMu.Lock()
	defer fl.addrMu.Unlock()
	if e, ok := fl.addrs[a]; ok {
		return e, true
	}
	if time.Since(fl.addrsMiss) < 100*time.Millisecond || !fl.d.cfg.Pool.Contains(a) && !fl.d.cfg.Pool6.Contains(a) {
		return flowEnv{}, false
	}
	fl.addrsMiss = time.Now()
	fl.rebuildAddrs()
	e, ok := fl.addrs[a]
	return e, ok
}

// rebuildAddrs maps every environment's addresses; the caller holds
// addrMu. An environment's address is read under its lock, which
// Provision holds while it sets it.
func (fl *flowLog) rebuildAddrs() {
	d := fl.d
	d.mu.RLock()
	envs := make([]*env, 0, len(d.envs))
	for _, e := range d.envs {
		envs = append(envs, e)
	}
	d.mu.RUnlock()
	m := make(map[netip.Addr]flowEnv, 2*len(envs))
	for _, e := range envs {
		unlock := d.peek(e.id)
		addr := e.addr
		unlock()
		if !addr.IsValid() {
			continue
		}
		fe := flowEnv{id: e.id, name: e.name}
		prefixes := d.envAddrs(addr)
		for i, p := range prefixes {
			fe.addrs[i] = p.Addr()
		}
		// Every address maps to the environment with all its addresses:
		// which one a reader finds it by is chance.
		for _, p := range prefixes {
			m[p.Addr()] = fe
		}
	}
	fl.addrs, fl.addrsAt = m, time.Now()
}

// add puts a record in this second's window, aggregating it with those
// that share its key.
func (fl *flowLog) add(rec apiv1.Flow) {
	k := flowKey{env: rec.EnvironmentID, dir: rec.Direction, verdict: rec.Verdict, proto: rec.Protocol, src: rec.SrcAddress, dst: rec.DstAddress,
		dstPort: rec.DstPort, policy: rec.PolicyID, fqdn: rec.FQDN, rule: -1}
	if rec.Rule != nil {
		k.rule = *rec.Rule
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	have, ok := fl.window[k]
	if !ok {
		fl.window[k] = &rec
		return
	}
	have.Count += rec.Count
	have.Packets += rec.Packets
	have.Bytes += rec.Bytes
	if have.SrcPort != rec.SrcPort {
		have.SrcPort = 0
	}
	if rec.FirstSeen.Before(have.FirstSeen) {
		have.FirstSeen = rec.FirstSeen
	}
	if rec.LastSeen.After(have.LastSeen) {
		have.LastSeen = rec.LastSeen
	}
}

// poll reads the denied counters and hands on the second's records,
// every flowPoll, and once more when the driver stops.
func (fl *flowLog) poll() {
	defer fl.wg.Done()
	defer close(fl.queue)
	// The denied counters outlive a run of the driver in the kernel:
	// what they hold at the start is where this run counts from, not
	// records of its own.
	fl.priming = true
	if err := fl.readDenied(fl.envsByName()); err != nil {
		fl.d.log.Warn("flow logs: read the denied counters", "err", err)
	}
	fl.priming = false
	close(fl.primed)
	tick := time.NewTicker(flowPoll)
	defer tick.Stop()
	for {
		select {
		case <-fl.quit:
			<-fl.consumed
			fl.flush()
			return
		case <-tick.C:
			fl.flush()
		}
	}
}

// flush reads the denied counters, then queues every record of the
// window.
func (fl *flowLog) flush() {
	fl.reapExpired()
	if err := fl.readDenied(fl.envsByName()); err != nil {
		fl.d.log.Warn("flow logs: read the denied counters", "err", err)
	}
	fl.mu.Lock()
	batch := make([]apiv1.Flow, 0, len(fl.window))
	now := time.Now().UTC()
	for _, rec := range fl.window {
		rec.Time = now
		batch = append(batch, *rec)
	}
	clear(fl.window)
	fl.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	select {
	case fl.queue <- batch:
	default:
		if fl.dropped.Add(uint64(len(batch))) == uint64(len(batch)) || fl.dropped.Load()%10000 < uint64(len(batch)) {
			fl.d.log.Warn("flow logs: the sink is behind; records dropped", "records", len(batch), "dropped_total", fl.dropped.Load())
		}
	}
}

// envsByName maps the address map anew and returns its environments by
// name.
func (fl *flowLog) envsByName() map[string]flowEnv {
	fl.addrMu.Lock()
	defer fl.addrMu.Unlock()
	fl.rebuildAddrs()
	envs := make(map[string]flowEnv, len(fl.addrs))
	for _, e := range fl.addrs {
		envs[e.name] = e
	}
	return envs
}

// reapMark is a conntrack mark no flow has: a dump filtered on it
// answers nothing.
const reapMark = 0x150de18

// reapExpired makes the kernel forget the flows whose timeout has passed,
// so that their records come now. Conntrack finds expired flows lazily,
// when a packet or its collector (which runs less often the fewer flows
// expire: up to a minute apart) meets them, or when a dump walks past
// them; this dump, filtered so that it answers nothing, is such a walk.
func (fl *flowLog) reapExpired() {
	if _, err := fl.reap.DumpFilter(conntrack.NewFilter().Mark(reapMark), nil); err != nil {
		fl.d.log.Debug("flow logs: conntrack dump", "err", err)
	}
}

// deliver hands the queued batches to the sink.
func (fl *flowLog) deliver() {
	defer fl.wg.Done()
	for batch := range fl.queue {
		fl.sink(batch)
	}
}

// readDenied reads every environment's denied totals (one dump for all)
// and sets, and adds what each gained since the last read.
func (fl *flowLog) readDenied(envs map[string]flowEnv) error {
	t := inetTable(fl.d.names.table())
	objs, err := fl.nft.GetObjects(t)
	if err != nil {
		return err
	}
	totals := map[string]nftables.CounterObj{}
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			totals[c.Name] = *c
		}
	}
	now := time.Now().UTC()
	var errs []error
	for name, e := range envs {
		st := fl.denied[name]
		if st == nil {
			st = &deniedState{elems: [2]map[string][2]uint64{{}, {}}, polled: now}
			fl.denied[name] = st
		}
		if err := fl.readEnvDenied(t, e, st, totals, now); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("%s: %w", e.id, err))
		}
		st.polled = now
	}
	for name := range fl.denied {
		if _, ok := envs[name]; !ok {
			delete(fl.denied, name)
		}
	}
	return errors.Join(errs...)
}

// readEnvDenied adds the records of what e's denied counters gained. The
// totals were read before the sets: a packet counted between the two
// reads is in the set's count now and in the total's next time, and the
// balance carries it over, so that it is never reported twice.
//
// A direction whose total has not moved is not read further: the rule
// counts the total before the set, so its sets gained nothing either, and
// an idle environment costs no dump of its sets. Its elements expire
// deniedTimeout after their last packet, and are forgotten then.
func (fl *flowLog) readEnvDenied(t *nftables.Table, e flowEnv, st *deniedState, totals map[string]nftables.CounterObj, now time.Time) error {
	sets := deniedSets(t, e.name)
	for dir := range 2 {
		total, ok := totals[envObject(e.name, deniedName(dir))]
		if !ok {
			continue
		}
		moved := gain(st.total[dir].Packets, total.Packets)
		st.balance[dir] += int64(moved) //nolint:gosec // G115: counters fit
		st.total[dir] = total
		if moved == 0 && st.balance[dir] == 0 {
			if now.Sub(st.moved[dir]) > deniedTimeout {
				clear(st.elems[dir])
			}
			continue
		}
		st.moved[dir] = now
		seen := map[string][2]uint64{}
		perPeer := map[string][]apiv1.Flow{}
		for fam := range 2 {
			set := sets[2*dir+fam]
			elems, err := fl.nft.GetSetElements(set)
			if err != nil {
				return fmt.Errorf("set %s: %w", set.Name, err)
			}
			for _, el := range elems {
				if el.Counter == nil {
					continue
				}
				id := set.Name + string(el.Key)
				last := st.elems[dir][id]
				seen[id] = [2]uint64{el.Counter.Packets, el.Counter.Bytes}
				packets := gain(last[0], el.Counter.Packets)
				if packets == 0 {
					continue
				}
				rec, ok := deniedRecord(e, dir, fam, el.Key)
				if !ok {
					continue
				}
				rec.Packets, rec.Count = int64(packets), int64(packets) //nolint:gosec // G115: counters fit
				rec.Bytes = int64(gain(last[1], el.Counter.Bytes))      //nolint:gosec // G115: counters fit
				rec.LastSeen = lastHit(el, now)
				rec.FirstSeen = st.polled
				if rec.LastSeen.Before(rec.FirstSeen) {
					rec.FirstSeen = rec.LastSeen
				}
				st.balance[dir] -= int64(packets) //nolint:gosec // G115: counters fit
				peer := rec.Protocol + " " + rec.SrcAddress + " " + rec.DstAddress
				perPeer[peer] = append(perPeer[peer], rec)
			}
		}
		// The elements the kernel let go are forgotten, so that one made
		// again under the same key counts from zero.
		st.elems[dir] = seen
		for _, recs := range perPeer {
			if len(recs) > apiv1.MaxFlowPortsPerPeer {
				recs = []apiv1.Flow{summarise(recs)}
			}
			for _, rec := range recs {
				if !fl.priming {
					fl.add(rec)
				}
			}
		}
		// A packet the sets do not explain may be one another CPU has
		// counted in the total and not yet put in its set: only what stays
		// unexplained over two reads is a packet a full set could not take.
		unexplained := min(st.balance[dir], st.pending[dir])
		st.pending[dir] = st.balance[dir] - max(unexplained, 0)
		if unexplained > 0 {
			local := e.addrs[0].String()
			rec := apiv1.Flow{EnvironmentID: e.id, Direction: [2]string{apiv1.Ingress, apiv1.Egress}[dir], Verdict: apiv1.VerdictDenied,
				Packets: unexplained, Count: unexplained, FirstSeen: st.polled, LastSeen: now}
			if dir == dirEgress {
				rec.SrcAddress = local
			} else {
				rec.DstAddress = local
			}
			st.balance[dir] -= unexplained
			if !fl.priming {
				fl.add(rec)
			}
		}
	}
	return nil
}

// gain is what a counter gained since it read last; a counter that went
// down was made again, and counts from zero.
func gain(last, now uint64) uint64 {
	if now < last {
		return now
	}
	return now - last
}

// lastHit is when a denied element last counted a packet: every packet
// sets its expiry to the set's timeout from then.
func lastHit(el nftables.SetElement, now time.Time) time.Time {
	if el.Expires <= 0 || el.Expires > deniedTimeout {
		return now
	}
	return now.Add(el.Expires - deniedTimeout).Truncate(time.Millisecond)
}

// deniedRecord decodes a denied set's key (remote address . protocol .
// port, each padded to four bytes) into the record it starts.
func deniedRecord(e flowEnv, dir, fam int, key []byte) (apiv1.Flow, bool) {
	alen := [2]int{4, 16}[fam]
	if len(key) < alen+8 || !e.addrs[fam].IsValid() {
		return apiv1.Flow{}, false
	}
	remote, _ := netip.AddrFromSlice(key[:alen])
	proto := key[alen]
	port := int(key[alen+4])<<8 | int(key[alen+5])
	rec := apiv1.Flow{EnvironmentID: e.id, Direction: [2]string{apiv1.Ingress, apiv1.Egress}[dir], Protocol: protocolName(proto), Verdict: apiv1.VerdictDenied}
	if proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_UDP {
		port = 0 // ICMP's type and code, not a port
	}
	rec.DstPort = port
	rec.SrcAddress, rec.DstAddress = e.addrs[fam].String(), remote.Unmap().String()
	if dir == dirIngress {
		rec.SrcAddress, rec.DstAddress = rec.DstAddress, rec.SrcAddress
	}
	return rec, true
}

// summarise folds a scan's records (one peer, many ports) into one
// without a port.
func summarise(recs []apiv1.Flow) apiv1.Flow {
	out := recs[0]
	out.DstPort = 0
	for _, r := range recs[1:] {
		out.Packets += r.Packets
		out.Bytes += r.Bytes
		out.Count += r.Count
		if r.LastSeen.After(out.LastSeen) {
			out.LastSeen = r.LastSeen
		}
	}
	return out
}

// stop ends flow logging: the sockets close, the last records are handed
// on, and every goroutine is gone when it returns.
func (fl *flowLog) stop() {
	close(fl.quit)
	fl.wg.Wait()
	_ = fl.nft.CloseLasting()
	_ = fl.reap.Close()
}

// stopFlowLogs stops flow logging, if it runs. It runs before Close takes
// the driver's lock, which the flow log's goroutines read under.
func (d *Driver) stopFlowLogs() {
	d.mu.Lock()
	fl := d.flows
	d.flows = nil
	d.mu.Unlock()
	if fl != nil {
		fl.stop()
		d.log.Info("flow logs off")
	}
}

// peek holds envID's lock, to read what Provision sets, without counting
// as a change of it (drift.go's epochs).
func (d *Driver) peek(envID string) func() {
	m := &d.locks[d.slot(envID)]
	m.Lock()
	return m.Unlock
}
