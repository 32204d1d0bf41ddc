package netns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
)

// Drift: someone other than the driver changed its kernel objects (`ip
// netns del`, `nft flush table`, `ip link del`). Verify finds it with one
// sweep over every environment that costs a few system calls whatever
// their number: a stat of each namespace's name, one link dump and two
// rule dumps of the router namespace, the dumps only when the nftables
// generation moved since the last sweep that found every rule in place. Each environment's fingerprint is
// its namespace's inode, its veth, and the number of rules in each of its
// chains and the guard's; the rules never change after they are made, so
// a count that differs means they were flushed or deleted.
//
// Repair is Provision then Apply, as after a restart: Provision recreates
// a namespace or veth that is gone, and re-declares every object of an
// environment whose rules Verify found missing (its exact flag is off).
// The guard's shared tables, which every environment's packets pass, are
// reinstalled by Verify itself, failing closed: until each environment
// is provisioned again its port sends nothing.

// Reasons Verify gives; they reach the API and the audit trail.
const (
	driftNamespace = "namespace deleted outside isolationd"
	driftVeth      = "veth removed outside isolationd"
	driftRules     = "nftables rules flushed or deleted outside isolationd"
	driftTable     = "nftables table deleted outside isolationd"
	driftFlushed   = "nftables table flushed outside isolationd"
)

// Verify implements enforce.Driver.
func (d *Driver) Verify(ctx context.Context) ([]enforce.Drift, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := d.routerHandle()
	if err != nil {
		return nil, err
	}
	d.mu.RLock()
	envs := make([]*env, 0, len(d.envs))
	for _, e := range d.envs {
		envs = append(envs, e)
	}
	d.mu.RUnlock()
	// What each environment's lock slot had seen before the snapshot: an
	// environment changed since is judged at the next sweep, not against
	// a snapshot older than its change.
	epochs := make([]uint64, len(envs))
	for i, e := range envs {
		epochs[i] = d.epochs[d.slot(e.id)].Load()
	}
	snap, err := d.snapshot(r)
	if err != nil {
		return nil, err
	}
	shared := ""
	if snap.rules != nil {
		shared = snap.guardDrift(d.guardCounts(r))
	}
	if shared != "" {
		d.log.Warn("the router's tables changed outside isolationd; reinstalling them", "reason", shared)
		if err := r.guard.install(d.names.bridge()); err != nil {
			return nil, fmt.Errorf("netns: reinstall the guard: %w", err)
		}
	}
	want := envChainCounts()
	var out []enforce.Drift
	rulesClean := shared == ""
	for i, e := range envs {
		m := &d.locks[d.slot(e.id)]
		m.Lock()
		if d.epochs[d.slot(e.id)].Load() != epochs[i] || !e.wired || d.env(e.id) != e {
			m.Unlock()
			rulesClean = false // not looked at: look again next time
			continue
		}
		reason := shared
		switch {
		case !e.stillNamed():
			reason = driftNamespace
		case !snap.links[e.name]:
			reason = driftVeth
		case reason == "" && snap.rules != nil && !snap.hasChains(e.name, want):
			reason, rulesClean = driftRules, false
		}
		if reason != "" {
			// Provision makes the kernel hold what applied says again.
			e.exact, e.wired = false, false
			out = append(out, enforce.Drift{EnvID: e.id, Reason: reason, Recreated: reason == driftNamespace})
		}
		m.Unlock()
	}
	if rulesClean && snap.rules != nil {
		d.cleanGen.Store(uint64(snap.gen) + 1)
	}
	return out, nil
}

// routerSnapshot is what one sweep reads of the router namespace.
type routerSnapshot struct {
	links map[string]bool
	// rules counts the rules of each chain, by family then name; a
	// family's map is nil when its table is gone. rules is nil when the
	// generation is that of the last clean sweep: nothing changed.
	rules map[nftables.TableFamily]map[string]int
	gen   uint32 // the nftables generation before the dumps
}

func (d *Driver) snapshot(r *router) (*routerSnapshot, error) {
	links, err := r.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netns: list links: %w", err)
	}
	s := &routerSnapshot{links: make(map[string]bool, len(links))}
	for _, l := range links {
		s.links[l.Attrs().Name] = true
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(r.ns)})
	if err != nil {
		return nil, fmt.Errorf("netns: netfilter socket: %w", err)
	}
	defer c.Close()
	if s.gen, err = generation(c); err != nil {
		return nil, fmt.Errorf("netns: nftables generation: %w", err)
	}
	if uint64(s.gen)+1 == d.cleanGen.Load() {
		return s, nil
	}
	s.rules = map[nftables.TableFamily]map[string]int{}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		if s.rules[fam], err = countRules(c, fam, d.names.table()); err != nil {
			return nil, fmt.Errorf("netns: list rules: %w", err)
		}
	}
	return s, nil
}

// countRules counts the rules of each chain of table in one dump; it
// returns nil when there is no such table.
func countRules(c *netlink.Conn, fam nftables.TableFamily, table string) (map[string]int, error) {
	msgs, err := nftRequest(c, fam, unix.NFT_MSG_GETRULE, netlink.Dump, unix.NFTA_RULE_TABLE, table)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		// The kernel dumps nothing for a table that is gone.
		if _, err := nftRequest(c, fam, unix.NFT_MSG_GETTABLE, 0, unix.NFTA_TABLE_NAME, table); errors.Is(err, unix.ENOENT) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
	}
	out := map[string]int{}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_RULE_CHAIN {
				out[ad.String()]++
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// inetRuleCounts counts the rules of each chain of the router's inet
// table.
func (d *Driver) inetRuleCounts(r *router) (map[string]int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(r.ns)})
	if err != nil {
		return nil, fmt.Errorf("netns: netfilter socket: %w", err)
	}
	defer c.Close()
	return countRules(c, nftables.TableFamilyINet, d.names.table())
}

// generation is the router namespace's nftables generation, which every
// committed transaction advances.
func generation(c *netlink.Conn) (uint32, error) {
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("no generation in the answer")
}

// nftRequest sends one nftables request of type msg for family fam
// with one string attribute, and returns the answers.
func nftRequest(c *netlink.Conn, fam nftables.TableFamily, msg uint16, flags netlink.HeaderFlags, attr uint16, value string) ([]netlink.Message, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: attr, Data: []byte(value + "\x00")}})
	if err != nil {
		return nil, err
	}
	return c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg), Flags: netlink.Request | flags},
		Data:   append([]byte{byte(fam), unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
}

// guardCounts is how many rules each of the guard's base chains holds,
// by family then name.
func (d *Driver) guardCounts(r *router) map[nftables.TableFamily]map[string]int {
	in := map[string]int{}
	for _, bc := range baseChains(d.names.bridge(), r.guard.resolvers...) {
		in[bc.name] = len(bc.rules)
	}
	return map[nftables.TableFamily]map[string]int{
		nftables.TableFamilyINet:   in,
		nftables.TableFamilyBridge: {"prerouting": len(r.guard.fromPortRules()), "forward": len(r.guard.toPortRules())},
	}
}

// guardDrift names what happened to the guard's tables, or is "".
func (s *routerSnapshot) guardDrift(want map[nftables.TableFamily]map[string]int) string {
	for fam, chains := range want {
		have := s.rules[fam]
		if have == nil {
			return driftTable
		}
		for name, n := range chains {
			if have[name] != n {
				return driftFlushed
			}
		}
	}
	return ""
}

// envChainCounts is how many rules each of an environment's chains
// holds, by the chain's name without the environment's.
func envChainCounts() map[string]int {
	sets := layoutSets(inetTable(""), "")
	out := map[string]int{}
	for _, spec := range chainLayout {
		out[spec.name] = len(spec.rules("", sets))
	}
	return out
}

// hasChains reports whether env's chains all hold their rules.
func (s *routerSnapshot) hasChains(env string, want map[string]int) bool {
	have := s.rules[nftables.TableFamilyINet]
	return !slices.ContainsFunc(chainLayout, func(spec chainSpec) bool {
		return have[envObject(env, spec.name)] != want[spec.name]
	})
}
