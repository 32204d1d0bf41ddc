package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// The uplink connects the router namespace to a wider network: the
// host's own namespace (Config.Uplink "host") or a named one
// ("netns:NAME"), through a veth pair on a small link network
// (Config.UplinkNet):
//
//	<prefix>uplink   the router's end, the link network's second address, the router's default route
//	<prefix>router   the other end, in the host's (or NAME's) namespace, the link network's first address,
//	                 with IPv4 forwarding on for packets it receives (net.ipv4.conf.<prefix>router.forwarding)
//	table ip <prefix> in the router namespace: masquerade to the router's address on the uplink
//
// Environments reach the outside exactly as their egress rules allow (the
// rules judge a packet before it is routed), from the router's address.
//
// The link network is link-local by default, so with "host" the host
// must forward what arrives on <prefix>router and send it on from one of
// its own addresses. The driver makes that, the minimum, in the host's
// namespace:
//
//	table ip <prefix>uplink {
//		set forwarding { type ifname }   interfaces whose IPv4 forwarding the driver turned on
//		chain postrouting { type nat hook postrouting priority srcnat;
//		                    ip saddr <link network> oifname != "<prefix>router" masquerade }
//	}
//
// Forwarding is turned on for each interface of the host's IPv4 default
// routes that had it off (replies come in there), and the set remembers
// which, so that removing the uplink turns them off again, even from
// another process. A host firewall that drops forwarded packets (a
// forward chain with policy drop) needs an accept for <prefix>router: a
// table cannot override another's drop, and the driver does not edit
// tables it does not own.
//
// Nothing else outside the router namespace changes: removing the pair
// (teardown, Purge, `isolationd cleanup`) removes both ends and the
// interface's forwarding setting with them, and the host's table. IPv4
// only.

// DefaultUplinkNet is the link network of an uplink for users who do
// not choose one: link-local, so that it clashes with no routed network.
var DefaultUplinkNet = netip.MustParsePrefix("169.254.201.0/30")

// NoUplinkWarning is what Check adds when the rules allow a packet to an
// address outside the environments' pools and the router has no uplink
// to send it on.
const NoUplinkWarning = "allowed by policy, but no uplink: the router namespace is not connected to any network beyond the environments (start isolationd with --uplink host or --uplink netns:NAME)"

// uplinkSpec is a parsed Config.Uplink.
type uplinkSpec struct {
	host      bool
	namespace string // with host false
	// nat makes the outer namespace forward and masquerade for the link
	// network, as a host must: set with host, and by tests that play
	// the host in a namespace of their own.
	nat bool
}

// ParseUplink checks an uplink's spelling: "host", "netns:NAME" or ""
// (none).
func ParseUplink(s string) error {
	_, err := parseUplink(s)
	return err
}

func parseUplink(s string) (*uplinkSpec, error) {
	switch name, isNS := strings.CutPrefix(s, "netns:"); {
	case s == "":
		return nil, nil
	case s == "host":
		return &uplinkSpec{host: true, nat: true}, nil
	case isNS && name != "" && !strings.ContainsAny(name, "/\x00") && name != "." && name != "..":
		return &uplinkSpec{namespace: name}, nil
	}
	return nil, fmt.Errorf("netns: uplink %q: write host or netns:NAME (a namespace under %s)", s, runDir)
}

func (n names) uplink() string     { return n.prefix + "uplink" }
func (n names) uplinkPeer() string { return n.prefix + "router" }

// uplinkAddrs are the outer end's and the router's addresses on the link
// network.
func (d *Driver) uplinkAddrs() (outer, inner netip.Prefix) {
	a := d.cfg.UplinkNet.Masked().Addr().Next()
	return netip.PrefixFrom(a, d.cfg.UplinkNet.Bits()), netip.PrefixFrom(a.Next(), d.cfg.UplinkNet.Bits())
}

func checkUplinkNet(link, pool, pool6 netip.Prefix) error {
	switch {
	case !link.Addr().Is4() || link.Bits() > 30:
		return fmt.Errorf("netns: uplink network %s must be an IPv4 prefix of at most /30", link)
	case link.Overlaps(pool) || (pool6.IsValid() && link.Overlaps(pool6)):
		return fmt.Errorf("netns: uplink network %s overlaps the address pool", link)
	}
	return nil
}

// openOuter opens the namespace the uplink leads to.
func (u *uplinkSpec) openOuter() (netns.NsHandle, error) {
	if u.host {
		return netns.Get()
	}
	h, err := openNamed(u.namespace)
	if err != nil {
		return h, fmt.Errorf("uplink namespace %s: %w", u.namespace, err)
	}
	return h, nil
}

// setUpUplink makes the uplink look as it should, repairing what is
// missing or wrong.
func (d *Driver) setUpUplink(r *router) error {
	outer, err := d.uplink.openOuter()
	if err != nil {
		return err
	}
	defer outer.Close()
	onl, err := netlink.NewHandleAt(outer, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer onl.Close()
	in, inErr := r.nl.LinkByName(d.names.uplink())
	out, outErr := onl.LinkByName(d.names.uplinkPeer())
	if inErr != nil || outErr != nil {
		// Half a pair, or a pair to another namespace: made again.
		for _, l := range []struct {
			nl   *netlink.Handle
			link netlink.Link
			err  error
		}{{r.nl, in, inErr}, {onl, out, outErr}} {
			if l.err != nil && !isNotFound(l.err) {
				return l.err
			}
			if l.err == nil {
				if err := l.nl.LinkDel(l.link); err != nil {
					return fmt.Errorf("delete stale uplink end %s: %w", l.link.Attrs().Name, err)
				}
			}
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: d.names.uplink()}, PeerName: d.names.uplinkPeer(), PeerNamespace: netlink.NsFd(int(outer))}
		if err := r.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("uplink veth %s: %w", d.names.uplink(), err)
		}
		if in, err = r.nl.LinkByName(d.names.uplink()); err != nil {
			return err
		}
		if out, err = onl.LinkByName(d.names.uplinkPeer()); err != nil {
			return err
		}
	}
	outerAddr, innerAddr := d.uplinkAddrs()
	if err := writeSysctl(outer, "net.ipv4.conf."+d.names.uplinkPeer()+".forwarding", "1"); err != nil {
		return err
	}
	for _, end := range []struct {
		nl   *netlink.Handle
		link netlink.Link
		addr netip.Prefix
	}{{onl, out, outerAddr}, {r.nl, in, innerAddr}} {
		if err := setAddrs(end.nl, end.link, []netip.Prefix{end.addr}); err != nil {
			return fmt.Errorf("uplink %s: %w", end.link.Attrs().Name, err)
		}
		if err := end.nl.LinkSetUp(end.link); err != nil {
			return err
		}
	}
	if err := waitOperational(5*time.Second, linkRef{r.nl, d.names.uplink()}, linkRef{onl, d.names.uplinkPeer()}); err != nil {
		return err
	}
	route := &netlink.Route{LinkIndex: in.Attrs().Index, Gw: net.IP(outerAddr.Addr().AsSlice())}
	if err := r.nl.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via %s: %w", outerAddr.Addr(), err)
	}
	if err := d.masquerade(r); err != nil {
		return err
	}
	if d.uplink.nat {
		return d.hostNAT(outer, onl)
	}
	return nil
}

func (n names) hostTable() string { return n.prefix + "uplink" }

const forwardingSet = "forwarding"

// hostNAT makes the outer namespace forward the link network's packets
// and masquerade them to its own addresses (see the top of this file).
func (d *Driver) hostNAT(outer netns.NsHandle, onl *netlink.Handle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(outer)))
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: d.names.hostTable(), Family: nftables.TableFamilyIPv4}
	var turnedOn []string
	if old, err := c.GetSetByName(t, forwardingSet); err == nil {
		elems, err := c.GetSetElements(old)
		if err != nil {
			return err
		}
		for _, e := range elems {
			turnedOn = append(turnedOn, strings.TrimRight(string(e.Key), "\x00"))
		}
	}
	routes, err := onl.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if rt.Dst != nil {
			if ones, _ := rt.Dst.Mask.Size(); ones != 0 {
				continue // not a default route
			}
		}
		l, err := onl.LinkByIndex(rt.LinkIndex)
		if err != nil || l.Attrs().Name == d.names.uplinkPeer() {
			continue
		}
		name := l.Attrs().Name
		on, err := readForwarding(outer, name)
		if err != nil {
			return err
		}
		if !on {
			if err := writeForwarding(outer, name, "1"); err != nil {
				return err
			}
			turnedOn = append(turnedOn, name)
			d.log.Info("uplink: turned on IPv4 forwarding, for replies to environments", "interface", name)
		}
	}
	c.AddTable(t)
	set := &nftables.Set{Table: t, Name: forwardingSet, KeyType: nftables.TypeIFName}
	var elems []nftables.SetElement
	for _, n := range slices.Compact(slices.Sorted(slices.Values(turnedOn))) {
		elems = append(elems, nftables.SetElement{Key: ifname(n)})
	}
	if err := c.AddSet(set, elems); err != nil {
		return err
	}
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.FlushChain(ch)
	link := d.cfg.UplinkNet.Masked()
	mask := net.CIDRMask(link.Bits(), 32)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: link.Addr().AsSlice()},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: ifname(d.names.uplinkPeer())},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("uplink: the host's masquerade: %w", err)
	}
	return nil
}

// removeHostNAT deletes the outer namespace's table, turning forwarding
// off again where the driver turned it on; a missing table is not an
// error.
func (d *Driver) removeHostNAT(outer netns.NsHandle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(outer)))
	if err != nil {
		return err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: d.names.hostTable(), Family: nftables.TableFamilyIPv4}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == t.Name }) {
		return nil
	}
	var errs []error
	if set, err := c.GetSetByName(t, forwardingSet); err == nil {
		elems, err := c.GetSetElements(set)
		errs = append(errs, err)
		for _, e := range elems {
			name := strings.TrimRight(string(e.Key), "\x00")
			if err := writeForwarding(outer, name, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	c.DelTable(t)
	return errors.Join(append(errs, c.Flush())...)
}

// Per-interface IPv4 forwarding, by path: an interface name may hold a
// dot, which a sysctl key would read as a separator.
func forwardingPath(ifname string) string {
	return filepath.Join("/proc/sys/net/ipv4/conf", ifname, "forwarding")
}

func readForwarding(h netns.NsHandle, ifname string) (bool, error) {
	var on bool
	err := inNamespace(h, func() error {
		b, err := os.ReadFile(forwardingPath(ifname))
		on = strings.TrimSpace(string(b)) == "1"
		return err
	})
	return on, err
}

func writeForwarding(h netns.NsHandle, ifname, value string) error {
	return inNamespace(h, func() error {
		// The file exists: a mode would apply only to a file created.
		return os.WriteFile(forwardingPath(ifname), []byte(value), 0)
	})
}

// masquerade makes the router's nat table send what leaves by the
// uplink from the router's address there.
func (d *Driver) masquerade(r *router) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(r.ns)))
	if err != nil {
		return err
	}
	t := c.AddTable(natTable(d.names.table()))
	ch := c.AddChain(&nftables.Chain{Name: "uplink", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.FlushChain(ch)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ifname(d.names.uplink())},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("uplink masquerade: %w", err)
	}
	return nil
}

func natTable(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
}

// removeUplink deletes the uplink, wherever it leads, and the router's
// nat table; a missing one is not an error. Deleting the router's end
// takes the other with it.
func (d *Driver) removeUplink(r *router) error {
	var errs []error
	if l, err := r.nl.LinkByName(d.names.uplink()); err == nil {
		errs = append(errs, r.nl.LinkDel(l))
	} else if !isNotFound(err) {
		errs = append(errs, err)
	}
	// An end left in the host's namespace without its router (a router
	// namespace deleted by hand) goes too.
	if l, err := netlink.LinkByName(d.names.uplinkPeer()); err == nil {
		if _, ok := l.(*netlink.Veth); ok {
			errs = append(errs, netlink.LinkDel(l))
		}
	}
	// The host's table goes whether or not this process was started with
	// the uplink: `isolationd cleanup` is not.
	if host, err := netns.Get(); err == nil {
		errs = append(errs, d.removeHostNAT(host))
		host.Close()
	}
	if d.uplink != nil && d.uplink.nat && !d.uplink.host {
		if outer, err := d.uplink.openOuter(); err == nil {
			errs = append(errs, d.removeHostNAT(outer))
			outer.Close()
		}
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(r.ns)))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	errs = append(errs, err)
	if slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == d.names.table() }) {
		c.DelTable(natTable(d.names.table()))
		errs = append(errs, c.Flush())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove uplink: %w", err)
	}
	return nil
}

// routeWarning adds NoUplinkWarning to res when the rules allow an egress
// packet that the router has nowhere to send.
func (d *Driver) routeWarning(req apiv1.CheckRequest, res apiv1.CheckResult) apiv1.CheckResult {
	if !res.Allowed || req.Direction != apiv1.Egress || d.uplink != nil {
		return res
	}
	a, err := netip.ParseAddr(req.Address)
	if err != nil {
		return res
	}
	a = a.Unmap()
	if d.cfg.Pool.Contains(a) || (d.cfg.Pool6.IsValid() && d.cfg.Pool6.Contains(a)) {
		return res
	}
	res.Warnings = append(res.Warnings, NoUplinkWarning)
	return res
}
