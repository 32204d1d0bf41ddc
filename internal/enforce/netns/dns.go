package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// The DNS proxy: every environment's resolver. It listens on UDP and TCP
// port 53 of the router's gateway addresses, in the router namespace; the
// router's rules let environments reach that port and nothing else of
// the router (guard.go). It knows the environment by the query's source
// address, which the guard lets only the environment's port send from.
//
// A name an fqdn rule of the environment matches is forwarded to the
// upstreams (Config.DNSUpstreams, in order, from the router namespace,
// so through the uplink), and the addresses of the answer are allowed
// before the answer is sent (fqdn.go). A name no rule matches is
// forwarded only when the environment could reach some address outside
// the pools anyway (a CIDR or any-peer egress rule); otherwise it is
// refused (REFUSED, with the Extended DNS Error 15 "Blocked" saying no
// egress rule allows the name), so that an environment allowed only
// names cannot carry data out in its queries. Without upstreams every
// query it would forward gets SERVFAIL (Extended DNS Error 22 "No
// Reachable Authority", naming the missing --dns-upstream); an upstream
// that fails or times out gives SERVFAIL too, after the others were
// tried, and is reported (Config.OnResolverFailure). An answer whose
// addresses the kernel could not be made to allow gets SERVFAIL: never an
// answer the environment cannot use, nor one that opens more.

// DefaultDNSTimeout is how long the proxy waits for one upstream.
const DefaultDNSTimeout = 2 * time.Second

// ResolverFailure is an upstream's failure to answer a query an
// environment sent.
type ResolverFailure struct {
	Upstream string // address:port
	EnvID    string
	Name     string // the name asked
	Err      error
}

// Messages the proxy puts in Extended DNS Errors.
const (
	ednsBlocked    = "isolationd: no egress rule of this environment allows the name %s"
	ednsNoUpstream = "isolationd: no upstream resolver is configured (isolationd serve --dns-upstream)"
	ednsFailed     = "isolationd: the upstream resolvers failed: %s"
	ednsNotAllowed = "isolationd: the answer's addresses could not be allowed: %s"
	ednsUnknown    = "isolationd: the query's source is not an environment"
)

// ParseDNSUpstream checks an upstream's spelling, ADDR or ADDR:PORT (an
// IPv6 address with a port in brackets), and returns it as address:port.
func ParseDNSUpstream(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return "", fmt.Errorf("netns: DNS upstream %q: write an IP address, with an optional port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53)", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}

// dnsProxy is the driver's DNS proxy.
type dnsProxy struct {
	d         *Driver
	upstreams []string
	minTTL    time.Duration
	maxTTL    time.Duration
	timeout   time.Duration
	slack     time.Duration
	servers   []*dns.Server
	served    sync.WaitGroup
	dialer    *nsDialer
}

// startDNS starts the proxy on the router's gateway addresses.
func (d *Driver) startDNS(r *router) (*dnsProxy, error) {
	p := &dnsProxy{d: d, upstreams: d.cfg.DNSUpstreams, minTTL: d.cfg.DNSMinTTL, maxTTL: d.cfg.DNSMaxTTL, timeout: d.cfg.DNSTimeout}
	p.slack = min(time.Second, p.minTTL/4)
	var err error
	if p.dialer, err = newNSDialer(r.ns); err != nil {
		return nil, err
	}
	for _, gw := range d.gateways() {
		addr := netip.AddrPortFrom(gw.Addr(), 53).String()
		var pc net.PacketConn
		var ln net.Listener
		// Freebind: an IPv6 gateway may still be tentative a moment.
		lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if strings.HasSuffix(network, "6") {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
				}
			})
			return errors.Join(err, serr)
		}}
		err := inNamespace(r.ns, func() error {
			var err error
			if pc, err = lc.ListenPacket(context.Background(), "udp", addr); err != nil {
				return err
			}
			if ln, err = lc.Listen(context.Background(), "tcp", addr); err != nil {
				pc.Close()
			}
			return err
		})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("dns proxy on %s: %w", addr, err)
		}
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: p}, {Listener: ln, Handler: p}} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			p.servers = append(p.servers, srv)
			errc := make(chan error, 1)
			p.served.Go(func() { errc <- srv.ActivateAndServe() })
			select {
			case <-started:
			case err := <-errc:
				p.close()
				return nil, fmt.Errorf("dns proxy on %s: %w", addr, err)
			}
		}
	}
	return p, nil
}

// close stops the proxy and closes its sockets.
func (p *dnsProxy) close() {
	for _, srv := range p.servers {
		_ = srv.Shutdown() // it closes the socket; an error says it was not started
	}
	p.served.Wait()
	if p.dialer != nil {
		p.dialer.close()
	}
}

// ServeDNS implements dns.Handler.
func (p *dnsProxy) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := p.answer(w, req)
	_ = w.WriteMsg(resp) // the environment went away: nothing to do
}

func (p *dnsProxy) answer(w dns.ResponseWriter, req *dns.Msg) *dns.Msg {
	src := addrOf(w.RemoteAddr())
	e := p.d.envByAddr(src)
	if e == nil {
		return refusal(req, dns.RcodeRefused, dns.ExtendedErrorCodeProhibited, ednsUnknown)
	}
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		return refusal(req, dns.RcodeFormatError, dns.ExtendedErrorCodeOther, "isolationd: one question per query")
	}
	name := apiv1.NormalizeFQDN(req.Question[0].Name)
	a := e.applied.Load()
	if rules, _ := a.fqdn.matching([]string{name}); len(rules) == 0 && !a.fqdn.open {
		return refusal(req, dns.RcodeRefused, dns.ExtendedErrorCodeBlocked, fmt.Sprintf(ednsBlocked, name))
	}
	if len(p.upstreams) == 0 {
		return refusal(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeNoReachableAuthority, ednsNoUpstream)
	}
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	resp, err := p.forward(e, name, req, network)
	if err != nil {
		return refusal(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeNoReachableAuthority, fmt.Sprintf(ednsFailed, err))
	}
	if ans := p.addresses(name, resp); len(ans.addrs) > 0 {
		if err := e.fqdn.learn(p.d, e.name, ans, time.Now(), p.slack); err != nil {
			p.d.log.Warn("dns answer not allowed", "env", e.id, "name", name, "err", err)
			return refusal(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeOther, fmt.Sprintf(ednsNotAllowed, err))
		}
	}
	return resp
}

// addresses follows resp's CNAME chain from name, caps TTLs above the
// maximum, and returns the chain and the addresses at its end with
// their TTLs clamped to the bounds. Addresses in the pools are left
// out: an fqdn rule never opens an environment.
func (p *dnsProxy) addresses(name string, resp *dns.Msg) answer {
	maxTTL := uint32(p.maxTTL / time.Second) //nolint:gosec // G115: an hour or so
	for _, rr := range resp.Answer {
		if h := rr.Header(); h.Ttl > maxTTL {
			h.Ttl = maxTTL
		}
	}
	ans := answer{chain: []string{name}, addrs: map[netip.Addr]time.Duration{}}
	if resp.Rcode != dns.RcodeSuccess {
		return ans
	}
	for range 16 { // CNAME chains are short; loops end here
		cur, next := ans.chain[len(ans.chain)-1], ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && apiv1.NormalizeFQDN(c.Hdr.Name) == cur {
				next = apiv1.NormalizeFQDN(c.Target)
				break
			}
		}
		if next == "" || strings.Contains(strings.Join(ans.chain, " "), next) {
			break
		}
		ans.chain = append(ans.chain, next)
	}
	in := map[string]bool{}
	for _, n := range ans.chain {
		in[n] = true
	}
	for _, rr := range resp.Answer {
		var ip net.IP
		switch r := rr.(type) {
		case *dns.A:
			ip = r.A
		case *dns.AAAA:
			ip = r.AAAA
		default:
			continue
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok || !in[apiv1.NormalizeFQDN(rr.Header().Name)] || p.d.inPools(a.Unmap()) {
			continue
		}
		ttl := min(max(time.Duration(rr.Header().Ttl)*time.Second, p.minTTL), p.maxTTL)
		if a = a.Unmap(); ttl > ans.addrs[a] {
			ans.addrs[a] = ttl
		}
	}
	return ans
}

// forward asks the upstreams in turn; each failure is reported.
func (p *dnsProxy) forward(e *env, name string, req *dns.Msg, network string) (*dns.Msg, error) {
	var errs []error
	for _, up := range p.upstreams {
		resp, err := p.exchange(req, network, up)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if f := p.d.cfg.OnResolverFailure; f != nil {
			f(ResolverFailure{Upstream: up, EnvID: e.id, Name: name, Err: err})
		}
	}
	return nil, errors.Join(errs...)
}

// exchange sends req to upstream on a socket of its own, made in the
// router namespace, and reads its answer.
func (p *dnsProxy) exchange(req *dns.Msg, network, upstream string) (*dns.Msg, error) {
	c, err := p.dialer.dial(network, upstream, p.timeout)
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: c, UDPSize: dns.MaxMsgSize}
	defer co.Close()
	if err := co.SetDeadline(time.Now().Add(p.timeout)); err != nil {
		return nil, err
	}
	if err := co.WriteMsg(req); err != nil {
		return nil, err
	}
	for {
		resp, err := co.ReadMsg()
		if err != nil {
			return nil, err
		}
		// A connected socket hears only the upstream; a stale or forged
		// answer is skipped.
		if resp.Id == req.Id && len(resp.Question) == 1 && strings.EqualFold(resp.Question[0].Name, req.Question[0].Name) {
			return resp, nil
		}
	}
}

// refusal is an answer to req with rcode and an Extended DNS Error.
func refusal(req *dns.Msg, rcode int, ede uint16, text string) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(dns.DefaultMsgSize)
	o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: ede, ExtraText: text})
	m.Extra = append(m.Extra, o)
	return m
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// nsDialer makes the proxy's upstream sockets in the router namespace: a
// socket stays in the namespace of the thread that created it. UDP
// sockets are made by one goroutine locked on a thread in the router
// namespace (creating one does not block); TCP connections, which do,
// each on a thread of their own.
type nsDialer struct {
	ns   netns.NsHandle
	reqs chan dialReq
	done chan struct{}
	tid  int // the thread of the UDP goroutine, for the tests
}

type dialReq struct {
	network, addr string
	reply         chan dialResult
}

type dialResult struct {
	c   net.Conn
	err error
}

func newNSDialer(h netns.NsHandle) (*nsDialer, error) {
	dup, err := unix.Dup(int(h))
	if err != nil {
		return nil, err
	}
	nd := &nsDialer{ns: netns.NsHandle(dup), reqs: make(chan dialReq), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(nd.done)
		// The thread goes back to its namespace and to the pool when the
		// dialer closes, rather than end locked: Go ends a thread that
		// its goroutine leaves locked, and the kernel then sends a
		// child's Pdeathsig (terraform-exec's SIGKILL to terraform, ours
		// to runc exec) to every child that thread had started.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ready <- err
			return
		}
		defer orig.Close()
		nd.tid = unix.Gettid()
		if err := netns.Set(nd.ns); err != nil {
			ready <- err
			nd.restore(orig)
			return
		}
		ready <- nil
		for r := range nd.reqs {
			c, err := net.Dial(r.network, r.addr)
			r.reply <- dialResult{c, err}
		}
		nd.restore(orig)
	}()
	if err := <-ready; err != nil {
		nd.ns.Close()
		return nil, fmt.Errorf("enter the router namespace: %w", err)
	}
	return nd, nil
}

// restore puts the dialer's thread back in orig and unlocks it; a thread
// that cannot go back stays locked and ends with the goroutine.
func (nd *nsDialer) restore(orig netns.NsHandle) {
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	}
}

func (nd *nsDialer) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	if network == "tcp" {
		var c net.Conn
		err := inNamespace(nd.ns, func() (err error) {
			c, err = net.DialTimeout(network, addr, timeout)
			return err
		})
		return c, err
	}
	reply := make(chan dialResult, 1)
	select {
	case nd.reqs <- dialReq{network, addr, reply}:
	case <-nd.done:
		return nil, errClosed
	}
	r := <-reply
	return r.c, r.err
}

func (nd *nsDialer) close() {
	close(nd.reqs)
	<-nd.done
	nd.ns.Close()
}
