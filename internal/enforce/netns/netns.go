// Package netns is isolationd's Linux enforcement driver. Every
// environment gets a network namespace of its own, joined by a veth pair
// (its port) to a bridge in a router namespace the driver owns. Its rules,
// rendered from its effective policy, live in the router namespace, on
// its port, out of reach of whatever runs in the environment, even as
// root; the environment's namespace holds no nftables object:
//
//   - both directions drop by default; IPv6 neighbour discovery passes;
//   - every other packet is judged by its flow (conntrack's original
//     tuple): a flow the environment starts must match its egress allows,
//     a flow a remote end starts its ingress allows, replies included, so
//     revoking an allow stops the flows it let in;
//   - the allows live in nftables interval sets (address, protocol, port),
//     so a packet costs the same few lookups whatever the number of
//     policies;
//   - a guard table on the router's bridge drops frames an environment
//     sends from a hardware or IP address that is not its own (ARP
//     included), and frames to a port that are addressed to another; the
//     bridge does not learn addresses, it knows each port's;
//   - a flow an environment starts that its egress rules deny is refused
//     at once, from the router (deny.go); denied ingress is dropped.
//
// It needs root (CAP_NET_ADMIN, and CAP_SYS_ADMIN for the namespace
// mounts). Without an uplink it touches nothing outside the namespaces
// it names with its prefix: not the host's interfaces, routes or
// firewall. Environments reach each other over the bridge and anything
// else through the router namespace, which the uplink (uplink.go), an
// operator or a test connects to a wider network.
package netns

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/enforce"
	"github.com/isolationhq/terraform-provider-isolation/internal/policy"
)

// DriverName is the name the API reports for this driver.
const DriverName = "netns"

// DefaultPool is the address pool for users who do not choose one.
var DefaultPool = netip.MustParsePrefix(apiv1.DefaultAddressPool)

// Config configures a Driver.
type Config struct {
	// Prefix starts the name of every kernel object the driver makes (see
	// names.go); 1-6 lowercase letters or digits, starting with a letter.
	// Default "iso". Two drivers with different prefixes never see each
	// other's objects.
	Prefix string
	// Pool is the prefix the control plane allocates environment
	// addresses from; its first host address is the gateway on the
	// router's bridge and must not be allocated. Default DefaultPool.
	Pool netip.Prefix
	// Pool6, optional with an IPv4 Pool, gives every environment an IPv6
	// address too: Pool6's prefix (at most /96) with the environment's
	// IPv4 address in its low 32 bits.
	Pool6 netip.Prefix
	// Uplink connects the router namespace to a wider network (see
	// uplink.go): "host", "netns:NAME", or "" for none, in which case
	// nothing outside the driver's namespaces is touched.
	Uplink string
	// UplinkNet is the uplink's link network, at most a /30 outside the
	// pools. Default DefaultUplinkNet.
	UplinkNet netip.Prefix
	// DNSUpstreams are the resolvers the DNS proxy forwards to, as
	// address:port (ParseDNSUpstream), tried in order; none means every
	// query the proxy would forward gets SERVFAIL (dns.go).
	DNSUpstreams []string
	// DNSMinTTL and DNSMaxTTL bound how long an answer's addresses stay
	// allowed for an fqdn rule, whatever its TTL says; TTLs above the
	// maximum are rewritten to it. Defaults DefaultDNSMinTTL and
	// DefaultDNSMaxTTL.
	DNSMinTTL, DNSMaxTTL time.Duration
	// DNSTimeout is how long the proxy waits for one upstream; default
	// DefaultDNSTimeout.
	DNSTimeout time.Duration
	// OnResolverFailure, when set, learns of every upstream that failed
	// or timed out; it must not block (the query waits for it).
	OnResolverFailure func(ResolverFailure)
	// Logger receives lifecycle events; default slog.Default().
	Logger *slog.Logger

	// hostNAT gives a netns:NAME uplink what "host" makes in the host's
	// namespace (uplink.go), for tests that play the host.
	hostNAT bool
}

// Driver implements enforce.Driver with network namespaces and nftables.
// Its methods are safe for concurrent use; work on one environment is
// serialized, work on different environments runs in parallel.
type Driver struct {
	cfg    Config
	names  names
	uplink *uplinkSpec // nil: none
	log    *slog.Logger
	locks  [64]sync.Mutex // by hash of environment id
	// epochs counts, per lock, the times it was taken, so that Verify
	// can tell an environment changed while it looked (drift.go).
	epochs [64]atomic.Uint64
	// cleanGen is 1 + the nftables generation of the last sweep that
	// found every rule in place, or 0 (drift.go).
	cleanGen atomic.Uint64
	// syncCounts, while Sync adopts, holds the rule count of each chain
	// of the router's inet table before it began.
	syncCounts atomic.Pointer[map[string]int]

	dns *dnsProxy

	mu     sync.RWMutex
	router *router
	envs   map[string]*env
	byAddr map[netip.Addr]*env // by each of its addresses, for the proxy
	flows  *flowLog            // nil: flow logs off (flows.go)
	closed bool
	purged bool
}

var _ enforce.Driver = (*Driver)(nil)

// env is what the driver holds for one environment.
type env struct {
	id      string
	name    string // its namespace, and its veth in the router namespace
	addr    netip.Addr
	ns      netns.NsHandle
	applied atomic.Pointer[applied]
	fqdn    *fqdnState

	// Used under the environment's lock.
	exact   bool           // the kernel holds what applied says (no failure or drift since)
	wired   bool           // the last Provision completed
	nft     *nftables.Conn // open on the router namespace, for this environment's objects
	nftSize int            // its socket buffers
	guarded *port          // what the router's guard has for it
}

// applied is the effective policy last committed to an environment's
// table, in the forms Check and debugging need.
type applied struct {
	policy apiv1.EffectivePolicy
	rules  *ruleset
	check  *policy.Ruleset
	fqdn   *fqdnPolicy
}

// New checks cfg and adopts or creates the router namespace and bridge.
func New(cfg Config) (*Driver, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	if !cfg.Pool.IsValid() {
		cfg.Pool = DefaultPool
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n, err := newNames(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if err := checkPools(cfg.Pool, cfg.Pool6); err != nil {
		return nil, err
	}
	cfg.Pool, cfg.Pool6 = cfg.Pool.Masked(), cfg.Pool6.Masked()
	up, err := parseUplink(cfg.Uplink)
	if err != nil {
		return nil, err
	}
	if up != nil && cfg.hostNAT {
		up.nat = true
	}
	if !cfg.UplinkNet.IsValid() {
		cfg.UplinkNet = DefaultUplinkNet
	}
	if err := cfg.dnsDefaults(); err != nil {
		return nil, err
	}
	if err := checkUplinkNet(cfg.UplinkNet, cfg.Pool, cfg.Pool6); err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, names: n, uplink: up, log: cfg.Logger.With("driver", DriverName, "prefix", cfg.Prefix), envs: map[string]*env{}, byAddr: map[netip.Addr]*env{}}
	if d.router, err = d.openRouter(); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	if up != nil {
		if err := d.setUpUplink(d.router); err != nil {
			d.Close()
			return nil, fmt.Errorf("netns: uplink %s: %w", cfg.Uplink, err)
		}
	}
	if d.dns, err = d.startDNS(d.router); err != nil {
		d.Close()
		return nil, fmt.Errorf("netns: %w", err)
	}
	return d, nil
}

// dnsDefaults fills in and checks the DNS proxy's settings.
func (cfg *Config) dnsDefaults() error {
	for i, up := range cfg.DNSUpstreams {
		norm, err := ParseDNSUpstream(up)
		if err != nil {
			return err
		}
		cfg.DNSUpstreams[i] = norm
	}
	if cfg.DNSMinTTL <= 0 {
		cfg.DNSMinTTL = DefaultDNSMinTTL
	}
	if cfg.DNSMaxTTL <= 0 {
		cfg.DNSMaxTTL = DefaultDNSMaxTTL
	}
	if cfg.DNSTimeout <= 0 {
		cfg.DNSTimeout = DefaultDNSTimeout
	}
	if cfg.DNSMinTTL > cfg.DNSMaxTTL {
		return fmt.Errorf("netns: the DNS minimum TTL (%v) is above the maximum (%v)", cfg.DNSMinTTL, cfg.DNSMaxTTL)
	}
	return nil
}

func checkPools(pool, pool6 netip.Prefix) error {
	switch {
	case pool.Addr().Is4In6():
		return fmt.Errorf("netns: address pool %s: write IPv4 pools as IPv4", pool)
	case pool.Addr().Is4() && pool.Bits() > 30, pool.Addr().Is6() && pool.Bits() > 126:
		return fmt.Errorf("netns: address pool %s is too small: it needs room for a gateway and environments", pool)
	case !pool6.IsValid():
		return nil
	case !pool.Addr().Is4():
		return fmt.Errorf("netns: an IPv6 pool (%s) only goes with an IPv4 address pool", pool6)
	case !pool6.Addr().Is6() || pool6.Addr().Is4In6() || pool6.Bits() > 96:
		return fmt.Errorf("netns: IPv6 pool %s must be an IPv6 prefix of at most /96", pool6)
	}
	return nil
}

// Name implements enforce.Driver.
func (d *Driver) Name() string { return DriverName }

// RouterNamespace is the name of the namespace holding the bridge, where
// an operator (or a test) connects the environments to a wider network.
func (d *Driver) RouterNamespace() string { return d.names.router() }

// Prefix is the prefix of every kernel object the driver makes, which the
// runc runtime names its containers with too.
func (d *Driver) Prefix() string { return d.names.prefix }

// BridgeName is the bridge's interface name inside RouterNamespace.
func (d *Driver) BridgeName() string { return d.names.bridge() }

// Namespace is the name of envID's namespace, as `ip netns list` shows it.
func (d *Driver) Namespace(envID string) string { return d.names.env(envID) }

// Addresses are the addresses envID has for address: the one given, and
// its IPv6 companion when Pool6 is set.
func (d *Driver) Addresses(address netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, p := range d.envAddrs(address) {
		out = append(out, p.Addr())
	}
	return out
}

// HardwareAddr is the hardware address of the interface holding address
// (an environment's eth0, or the bridge for the gateway): the bridge
// forwards it to that interface only.
func (d *Driver) HardwareAddr(address netip.Addr) net.HardwareAddr { return macFor(address) }

// Gateway is the router's address on the bridge, the environments'
// default route.
func (d *Driver) Gateway() netip.Addr { return d.gateways()[0].Addr() }

// Provision implements enforce.Driver. A new namespace gets its
// deny-everything rules in the router before it gets a network interface.
func (d *Driver) Provision(ctx context.Context, envID, address string) (enforce.Endpoint, error) {
	if err := ctx.Err(); err != nil {
		return enforce.Endpoint{}, err
	}
	addr, err := d.parseAddress(address)
	if err != nil {
		return enforce.Endpoint{}, err
	}
	unlock := d.lock(envID)
	defer unlock()
	e, err := d.provision(envID, addr)
	if err != nil {
		return enforce.Endpoint{}, fmt.Errorf("netns: provision %s: %w", envID, err)
	}
	return enforce.Endpoint{Address: addr.String(), Namespace: e.name, Nameservers: d.Nameservers()}, nil
}

// Nameservers are the environments' resolvers: the DNS proxy, on the
// router's gateway addresses.
func (d *Driver) Nameservers() []string {
	var out []string
	for _, a := range d.resolverAddrs() {
		out = append(out, a.String())
	}
	return out
}

// resolverAddrs are the DNS proxy's addresses: the gateways.
func (d *Driver) resolverAddrs() []netip.Addr {
	var out []netip.Addr
	for _, gw := range d.gateways() {
		out = append(out, gw.Addr())
	}
	return out
}

// inPools reports whether a is in the environments' address pools.
func (d *Driver) inPools(a netip.Addr) bool {
	return slices.ContainsFunc(d.pools(), func(p netip.Prefix) bool { return p.Contains(a) })
}

func (d *Driver) pools() []netip.Prefix {
	out := []netip.Prefix{d.cfg.Pool}
	if d.cfg.Pool6.IsValid() {
		out = append(out, d.cfg.Pool6)
	}
	return out
}

// envByAddr is the environment that holds address a, or nil.
func (d *Driver) envByAddr(a netip.Addr) *env {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.byAddr[a]
}

func (d *Driver) parseAddress(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("netns: address %q: %w", s, err)
	}
	a = a.Unmap().WithZone("")
	pool := d.cfg.Pool
	if !pool.Contains(a) {
		return a, fmt.Errorf("netns: address %s is outside the address pool %s", a, pool)
	}
	last := prefixSpan(pool).hi
	if a == pool.Addr() || a == d.gateways()[0].Addr() || (a.Is4() && a == last) {
		return a, fmt.Errorf("netns: address %s is reserved in the address pool %s (network, gateway or broadcast)", a, pool)
	}
	return a, nil
}

// provision adopts or creates envID's namespace and wires it; the caller
// holds envID's lock.
func (d *Driver) provision(envID string, addr netip.Addr) (*env, error) {
	r, err := d.routerHandle()
	if err != nil {
		return nil, err
	}
	d.mu.RLock()
	e := d.envs[envID]
	d.mu.RUnlock()
	if e != nil && !e.stillNamed() {
		// Someone removed the namespace under us (`ip netns del`): start over.
		d.forget(envID)
		e = nil
	}
	if e == nil {
		if e, err = d.openEnv(envID); err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.envs[envID] = e
		d.mu.Unlock()
	}
	d.index(e, addr)
	e.wired = false
	if a := e.applied.Load(); !e.exact && a != nil {
		// Its rules drifted or a transaction failed: declare them all again.
		if err := d.apply(e, a.policy); err != nil {
			return nil, err
		}
	}
	if err := d.wireEnv(r, e); err != nil {
		return nil, err
	}
	e.wired = true
	return e, nil
}

// index makes the proxy know e by addr (and its IPv6 companion).
func (d *Driver) index(e *env, addr netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unindex(e)
	e.addr = addr
	for _, a := range d.Addresses(addr) {
		d.byAddr[a] = e
	}
}

// unindex forgets e's addresses; the caller holds d.mu.
func (d *Driver) unindex(e *env) {
	if !e.addr.IsValid() {
		return
	}
	for _, a := range d.Addresses(e.addr) {
		if d.byAddr[a] == e {
			delete(d.byAddr, a)
		}
	}
}

// openEnv adopts envID's namespace with the rules it has, or creates it
// with everything denied.
func (d *Driver) openEnv(envID string) (*env, error) {
	name := d.names.env(envID)
	h, created, err := openOrCreate(name)
	if err != nil {
		return nil, err
	}
	e := &env{id: envID, name: name, ns: h, fqdn: newFQDNState()}
	if !created {
		err := d.adopt(e)
		if err == nil {
			d.log.Info("adopted namespace", "env", envID, "namespace", name, "generation", e.applied.Load().policy.Generation)
			return e, nil
		}
		// Rules we cannot account for are replaced by denying everything
		// until the control plane applies the real ones.
		d.log.Warn("namespace has no readable rules; denying everything until the next apply", "env", envID, "namespace", name, "err", err)
	} else {
		d.log.Info("created namespace", "env", envID, "namespace", name)
	}
	if err := d.apply(e, apiv1.EffectivePolicy{EnvironmentID: envID}); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// adopt loads the record of the rules the router holds for an existing
// namespace. A namespace made before the rules moved to the router holds
// them itself: they are moved.
func (d *Driver) adopt(e *env) error {
	c, err := d.nftConn(e, 0)
	if err != nil {
		return err
	}
	p, found, err := readRecord(c, d.names.table(), envObject(e.name, recordSetName))
	if err != nil {
		return err
	}
	legacy, lerr := d.dropLegacyTable(e)
	if !found {
		if lerr != nil {
			return lerr
		}
		if legacy == nil {
			return errors.New("no nftables rules")
		}
		return d.apply(e, *legacy)
	}
	current, err := d.chainsCurrent(e.name)
	if err != nil {
		return err
	}
	if !current {
		// Chains an older version made: written again with everything
		// else, before the first sweep would call them drift.
		d.log.Info("rewriting the chains an older version made", "env", e.id, "namespace", e.name)
		return d.apply(e, p)
	}
	rs, err := render(p)
	if err != nil {
		return err
	}
	fp, err := compileFQDN(p, rs, d.pools())
	if err != nil {
		return err
	}
	if err := d.adoptFQDN(e, fp); err != nil {
		// Objects of an older version, or none: declared anew by the
		// next Provision.
		d.log.Info("the namespace's fqdn objects are missing; declaring them", "env", e.id, "err", err)
		e.applied.Store(&applied{policy: p, rules: rs, check: policy.Compile(p), fqdn: fp})
		return nil
	}
	e.applied.Store(&applied{policy: p, rules: rs, check: policy.Compile(p), fqdn: fp})
	e.exact = true
	return nil
}

// chainsCurrent reports whether env's chains hold as many rules as this
// version writes (the count the drift sweep checks), from the counts Sync
// read once for every environment it adopts, or from the kernel.
func (d *Driver) chainsCurrent(env string) (bool, error) {
	counts := d.syncCounts.Load()
	if counts == nil {
		r, err := d.routerHandle()
		if err != nil {
			return false, err
		}
		m, err := d.inetRuleCounts(r)
		if err != nil {
			return false, err
		}
		counts = &m
	}
	for name, want := range envChainCounts() {
		if (*counts)[envObject(env, name)] != want {
			return false, nil
		}
	}
	return true, nil
}

// dropLegacyTable deletes the table an environment's namespace held
// before the rules moved to the router, and returns the policy it
// recorded, if it did.
func (d *Driver) dropLegacyTable(e *env) (*apiv1.EffectivePolicy, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(e.ns)))
	if err != nil {
		return nil, err
	}
	p, found, rerr := readRecord(c, d.names.table(), "applied_a", "applied_b")
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == d.names.table() }) {
		return nil, nil
	}
	c.DelTable(inetTable(d.names.table()))
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("delete the namespace's own table: %w", err)
	}
	d.log.Info("moved the namespace's rules to the router", "env", e.id, "namespace", e.name)
	if rerr != nil || !found {
		return nil, rerr
	}
	return &p, nil
}

// stillNamed reports whether /run/netns still names the namespace e holds.
func (e *env) stillNamed() bool {
	var held, named unix.Stat_t
	if unix.Fstat(int(e.ns), &held) != nil || unix.Stat(filepath.Join(runDir, e.name), &named) != nil {
		return false
	}
	return held.Dev == named.Dev && held.Ino == named.Ino
}

// Apply implements enforce.Driver: the environment's rules are replaced
// in one nftables transaction. On error the kernel keeps the previous rules,
// and so does Check.
func (d *Driver) Apply(ctx context.Context, envID string, p apiv1.EffectivePolicy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.EnvironmentID != "" && p.EnvironmentID != envID {
		return fmt.Errorf("netns: apply %s: the policy is for environment %s", envID, p.EnvironmentID)
	}
	unlock := d.lock(envID)
	defer unlock()
	e := d.env(envID)
	if e == nil {
		return fmt.Errorf("netns: apply %s: %w", envID, enforce.ErrUnknownEnvironment)
	}
	if err := d.apply(e, p); err != nil {
		return fmt.Errorf("netns: apply %s: %w", envID, err)
	}
	return nil
}

func (d *Driver) apply(e *env, p apiv1.EffectivePolicy) error {
	start := time.Now()
	rs, err := render(p)
	if err != nil {
		return err
	}
	fp, err := compileFQDN(p, rs, d.pools())
	if err != nil {
		return err
	}
	rec, err := encodeRecord(p)
	if err != nil {
		return err
	}
	// What the kernel holds is known unless this is the environment's
	// first ruleset or a transaction failed: then every object is
	// declared and refilled.
	var old *ruleset
	if a := e.applied.Load(); a != nil && e.exact {
		old = a.rules
	}
	n := rs.elementCount() + len(rec)
	if old != nil {
		n += old.elementCount()
	}
	e.exact = false
	// The proxy's answers wait while the epoch may change.
	e.fqdn.mu.Lock()
	defer e.fqdn.mu.Unlock()
	var commit fqdnCommit
	err = d.transact(e, n+e.fqdn.elementCount(), func(c *nftables.Conn) error {
		if err := queueApply(c, d.names.table(), e.name, old, rs, rec); err != nil {
			return err
		}
		var err error
		commit, err = e.fqdn.queueFQDN(c, d.names.table(), e.name, fp, old == nil, time.Now())
		return err
	})
	if err != nil {
		return err
	}
	commit()
	e.exact = true
	e.applied.Store(&applied{policy: p, rules: rs, check: policy.Compile(p), fqdn: fp})
	d.log.Debug("applied rules", "env", e.id, "generation", p.Generation, "elements", rs.elementCount(), "took", time.Since(start))
	return nil
}

// transact runs what queue queues, on e's objects in the router
// namespace, as one nftables transaction of about n set elements. The
// caller holds e's lock.
func (d *Driver) transact(e *env, n int, queue func(*nftables.Conn) error) error {
	c, err := d.nftConn(e, n)
	if err != nil {
		return err
	}
	if err := queue(c); err != nil {
		e.closeNft() // it may hold half a batch
		return err
	}
	if err := c.Flush(); err != nil {
		e.closeNft()
		return err
	}
	return nil
}

// nftConn returns e's nftables connection to the router namespace, with
// socket buffers for a batch of n elements. Each environment has its own,
// so that concurrent applies never share a batch. It stays open between
// transactions: closing a socket that committed a transaction waits for
// the kernel to finish releasing it (about 10 ms), which would double the
// cost of an Apply.
func (d *Driver) nftConn(e *env, n int) (*nftables.Conn, error) {
	size := batchBytes(n)
	if e.nft != nil && e.nftSize >= size {
		return e.nft, nil
	}
	e.closeNft()
	r, err := d.routerHandle()
	if err != nil {
		return nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(r.ns)), nftables.AsLasting(), nftables.WithSockOptions(socketBuffers(size)))
	if err != nil {
		return nil, err
	}
	e.nft, e.nftSize = c, size
	return c, nil
}

// closeNft lets the connection go; the next apply opens a new one. A failure
// to close it leaves nothing the driver could act on.
func (e *env) closeNft() {
	if e.nft != nil {
		_ = e.nft.CloseLasting()
		e.nft = nil
	}
}

// close releases what the driver holds open for e.
func (e *env) close() {
	e.fqdn.close()
	e.closeNft()
	e.ns.Close()
}

// Check implements enforce.Driver, from the rules last committed.
func (d *Driver) Check(ctx context.Context, envID string, req apiv1.CheckRequest) (apiv1.CheckResult, error) {
	if err := ctx.Err(); err != nil {
		return apiv1.CheckResult{}, err
	}
	e := d.env(envID)
	if e == nil {
		return apiv1.CheckResult{}, enforce.ErrUnknownEnvironment
	}
	a := e.applied.Load()
	if _, err := netip.ParseAddr(req.Address); err != nil && req.Direction == apiv1.Egress {
		return d.checkName(e, a, req), nil
	}
	return d.checkAddr(e, a, req), nil
}

// Ruleset renders the rules last committed to envID in nft's syntax.
func (d *Driver) Ruleset(envID string) (string, error) {
	e := d.env(envID)
	if e == nil {
		return "", enforce.ErrUnknownEnvironment
	}
	a := e.applied.Load()
	return a.rules.text(d.names.table(), e.name, d.resolverAddrs()...), nil
}

// Teardown implements enforce.Driver: it removes envID's veth pair, its
// objects in the router's tables and its namespace, known to this process
// or not.
func (d *Driver) Teardown(ctx context.Context, envID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock := d.lock(envID)
	defer unlock()
	if err := d.remove(d.names.env(envID)); err != nil {
		return fmt.Errorf("netns: teardown %s: %w", envID, err)
	}
	d.forget(envID)
	return nil
}

// remove deletes the veth, the router's objects and the namespace called
// name; the router's objects go in one transaction.
func (d *Driver) remove(name string) error {
	r, err := d.routerHandle()
	if err != nil {
		return err
	}
	if link, err := r.nl.LinkByName(name); err == nil {
		if err := r.nl.LinkDel(link); err != nil {
			return fmt.Errorf("delete veth %s: %w", name, err)
		}
	} else if !isNotFound(err) {
		return err
	}
	if err := r.guard.forget(name, func(c *nftables.Conn) error { return removeEnv(c, d.names.table(), name) }); err != nil {
		return err
	}
	if err := deleteNamed(name); err != nil {
		return err
	}
	d.log.Info("removed namespace", "namespace", name)
	return nil
}

func (d *Driver) forget(envID string) {
	d.mu.Lock()
	e := d.envs[envID]
	delete(d.envs, envID)
	if e != nil {
		d.unindex(e)
	}
	d.mu.Unlock()
	if e != nil {
		e.close()
	}
}

// syncWorkers bounds how many environments Sync restores at once.
const syncWorkers = 4

// Sync implements enforce.Driver: environments in keep are adopted (with
// the rules their namespace records) or recreated (denying everything);
// namespaces and veths with the driver's prefix that belong to no
// environment in keep are removed. It carries on past failures and
// reports them all.
func (d *Driver) Sync(ctx context.Context, keep map[string]string) error {
	var (
		errMu sync.Mutex
		errs  []error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, syncWorkers)
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	if r, err := d.routerHandle(); err == nil {
		// One dump for every adoption, not one each.
		if counts, err := d.inetRuleCounts(r); err == nil {
			d.syncCounts.Store(&counts)
			defer d.syncCounts.Store(nil)
		}
	}
	wanted := map[string]bool{}
	for id, address := range keep {
		wanted[d.names.env(id)] = true
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := d.Provision(ctx, id, address); err != nil {
				fail(&enforce.EnvironmentError{EnvID: id, Err: err})
			}
		})
	}
	wg.Wait()
	if err := d.removeUnwanted(wanted); err != nil {
		fail(err)
	}
	if err := d.resetGuard(wanted); err != nil {
		fail(err)
	}
	return errors.Join(errs...)
}

// resetGuard makes the router's guard know exactly the environments the
// driver holds, and removes the objects of environments outside wanted
// that a crash left in the router's inet table.
func (d *Driver) resetGuard(wanted map[string]bool) error {
	r, err := d.routerHandle()
	if err != nil {
		return err
	}
	ports := map[string]port{}
	d.mu.RLock()
	for _, e := range d.envs {
		if e.guarded != nil {
			ports[e.name] = *e.guarded
		}
	}
	d.mu.RUnlock()
	chains, err := listChains(r.guard.conn, d.names.table())
	if err != nil {
		return err
	}
	stale := map[string]bool{}
	for _, ch := range chains {
		if env, _, ok := strings.Cut(ch, "_"); ok && d.names.isEnv(env) && !wanted[env] && ports[env].mac == nil {
			stale[env] = true
		}
	}
	return r.guard.reset(ports, func(c *nftables.Conn) error {
		for env := range stale {
			if err := removeEnv(c, d.names.table(), env); err != nil {
				return err
			}
		}
		return nil
	})
}

func (d *Driver) removeUnwanted(wanted map[string]bool) error {
	var errs []error
	d.mu.RLock()
	var stale []string
	for id, e := range d.envs {
		if !wanted[e.name] {
			stale = append(stale, id)
		}
	}
	d.mu.RUnlock()
	for _, id := range stale {
		errs = append(errs, d.Teardown(context.Background(), id))
	}
	nsNames, err := listNamed(d.names.isEnv)
	errs = append(errs, err)
	for _, name := range nsNames {
		if !wanted[name] {
			errs = append(errs, d.remove(name))
		}
	}
	r, err := d.routerHandle()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	links, err := r.nl.LinkList()
	errs = append(errs, err)
	for _, l := range links {
		if name := l.Attrs().Name; d.names.isEnv(name) && !wanted[name] {
			errs = append(errs, d.remove(name))
		}
	}
	return errors.Join(errs...)
}

// Purge removes every kernel object the driver's prefix names, the router
// namespace included, and closes the driver: for uninstalling, and for
// tests cleaning up after themselves. Purging again does nothing.
func (d *Driver) Purge(ctx context.Context) error {
	d.mu.RLock()
	purged := d.purged
	d.mu.RUnlock()
	if purged {
		return nil
	}
	err := d.Sync(ctx, nil)
	if r, rerr := d.routerHandle(); rerr == nil {
		err = errors.Join(err, d.removeUplink(r))
	}
	d.Close()
	d.mu.Lock()
	d.purged = true
	d.mu.Unlock()
	return errors.Join(err, deleteNamed(d.names.router()))
}

// Close implements enforce.Driver: it releases the driver's handles and
// leaves every kernel object in place for the next start.
func (d *Driver) Close() error {
	d.stopFlowLogs()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	// The proxy's handlers read the environments: it stops first.
	if d.dns != nil {
		d.dns.close()
	}
	d.mu.Lock()
	for _, e := range d.envs {
		e.close()
	}
	d.envs, d.byAddr = map[string]*env{}, map[netip.Addr]*env{}
	d.router.close()
	return nil
}

var errClosed = errors.New("netns: driver is closed")

func (d *Driver) routerHandle() (*router, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, errClosed
	}
	return d.router, nil
}

func (d *Driver) env(envID string) *env {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.envs[envID]
}

func (d *Driver) lock(envID string) func() {
	i := d.slot(envID)
	d.locks[i].Lock()
	d.epochs[i].Add(1)
	return d.locks[i].Unlock
}

// slot is the index of envID's lock.
func (d *Driver) slot(envID string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(envID))
	return h.Sum32() % uint32(len(d.locks))
}
