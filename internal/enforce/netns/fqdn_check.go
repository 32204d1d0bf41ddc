package netns

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
)

var _ enforce.NameResolver = (*Driver)(nil)

// UnresolvedWarning is what Check says of a host name the environment
// has not resolved through its resolver, or whose answer expired: the
// kernel allows none of its addresses now.
const UnresolvedWarning = "the environment has not resolved %s through its resolver (or the answer expired): no address is allowed for it now"

// checkAddr answers req, for an address, as the kernel would now: the
// static rules, then the addresses the environment's names hold.
func (d *Driver) checkAddr(e *env, a *applied, req apiv1.CheckRequest) apiv1.CheckResult {
	res := a.check.Check(req)
	if !res.Allowed && req.Direction == apiv1.Egress {
		if addr, err := netip.ParseAddr(req.Address); err == nil {
			addr = addr.Unmap().WithZone("")
			if m, name, ok := e.fqdn.allows(addr, protoNumber(req.Protocol, addr.Is6()), uint16(min(max(req.Port, 0), 65535)), time.Now()); ok { //nolint:gosec // G115: clamped
				res = apiv1.CheckResult{Allowed: true, Matched: &m, FQDN: name}
			}
		}
	}
	return d.routeWarning(req, res)
}

// checkName answers req for a host name: for every address the
// environment's resolver holds for it now, each as the kernel would.
func (d *Driver) checkName(e *env, a *applied, req apiv1.CheckRequest) apiv1.CheckResult {
	name := apiv1.NormalizeFQDN(req.Address)
	addrs := e.fqdn.lookup(name, time.Now())
	if len(addrs) == 0 {
		return apiv1.CheckResult{Warnings: []string{fmt.Sprintf(UnresolvedWarning, name)}}
	}
	out := apiv1.CheckResult{Allowed: true}
	for _, addr := range addrs {
		one := req
		one.Address = addr.String()
		res := d.checkAddr(e, a, one)
		out.Addresses = append(out.Addresses, one.Address)
		for _, w := range res.Warnings {
			if !slices.Contains(out.Warnings, w) {
				out.Warnings = append(out.Warnings, w)
			}
		}
		switch {
		case !res.Allowed:
			out.Allowed = false
		case out.Matched == nil:
			out.Matched, out.FQDN = res.Matched, res.FQDN
		}
	}
	if !out.Allowed {
		out.Matched, out.FQDN = nil, ""
	}
	return out
}

func protoNumber(proto string, v6 bool) uint8 {
	switch proto {
	case apiv1.ProtocolUDP:
		return unix.IPPROTO_UDP
	case apiv1.ProtocolICMP:
		if v6 {
			return unix.IPPROTO_ICMPV6
		}
		return unix.IPPROTO_ICMP
	}
	return unix.IPPROTO_TCP
}

// ResolvedNames implements enforce.NameResolver.
func (d *Driver) ResolvedNames(_ context.Context, envID, pattern string) []apiv1.ResolvedName {
	e := d.env(envID)
	if e == nil {
		return nil
	}
	return e.fqdn.resolvedNames(pattern, time.Now())
}

// adoptFQDN takes up the epoch the kernel holds for an adopted
// environment and empties its maps: the names behind their elements
// were not recorded, so what Check says and what the kernel does agree
// again when the environment resolves them anew. Established flows keep
// their epoch, and continue.
func (d *Driver) adoptFQDN(e *env, fp *fqdnPolicy) error {
	c, err := d.nftConn(e, 0)
	if err != nil {
		return err
	}
	t := inetTable(d.names.table())
	sets := fqdnSets(t, e.name)
	var epoch uint32
	for i, s := range sets {
		got, err := c.GetSetByName(t, s.Name)
		if err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		if i == 2 {
			elems, err := c.GetSetElements(got)
			if err != nil || len(elems) != 1 || len(elems[0].Key) != 4 {
				return fmt.Errorf("set %s holds no epoch (%v)", s.Name, err)
			}
			epoch = uint32FromMark(elems[0].Key)
		}
	}
	e.fqdn.mu.Lock()
	defer e.fqdn.mu.Unlock()
	err = d.transact(e, 0, func(c *nftables.Conn) error {
		c.FlushSet(sets[0])
		c.FlushSet(sets[1])
		return nil
	})
	if err != nil {
		return err
	}
	e.fqdn.policy, e.fqdn.epoch = fp, epoch
	return nil
}

func uint32FromMark(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// elementCount is about how many elements a refill of the maps sends.
func (s *fqdnState) elementCount() int {
	n := 0
	for _, exps := range s.installed {
		n += len(exps)
	}
	return n
}
