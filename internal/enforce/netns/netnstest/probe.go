package netnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
)

// Endpoint is one end of a probe.
type Endpoint struct {
	Env       string     // the environment's id; "" for a namespace no driver rules (the internet)
	Namespace string     // its namespace's name
	Addr      netip.Addr // the address it sends from or is reached at
}

func (e Endpoint) String() string {
	who := e.Env
	if who == "" {
		who = "internet"
	}
	return fmt.Sprintf("%s[%s]", who, e.Addr)
}

// Probe is one packet (a TCP connection, a UDP datagram, an ICMP echo) sent
// From one endpoint To another.
type Probe struct {
	From, To Endpoint
	Protocol string // tcp, udp, sctp or icmp
	Port     int    // destination port; 0 for icmp
}

func (p Probe) String() string {
	if p.Protocol == apiv1.ProtocolICMP {
		return fmt.Sprintf("icmp %s -> %s", p.From, p.To)
	}
	return fmt.Sprintf("%s %s -> %s port %d", p.Protocol, p.From, p.To, p.Port)
}

// Oracle says whether environment envID's rules allow req: the driver's
// Check, or a client of the API's check endpoint.
type Oracle func(envID string, req apiv1.CheckRequest) (bool, error)

// Requests are the checks that decide p: the sender's egress and the
// receiver's ingress, for the ends that are environments.
func (p Probe) Requests() map[string]apiv1.CheckRequest {
	out := map[string]apiv1.CheckRequest{}
	port := p.Port
	if p.Protocol == apiv1.ProtocolICMP {
		port = 0
	}
	if p.From.Env != "" {
		out[apiv1.Egress] = apiv1.CheckRequest{Direction: apiv1.Egress, Protocol: p.Protocol, Address: p.To.Addr.String(), Port: port}
	}
	if p.To.Env != "" {
		out[apiv1.Ingress] = apiv1.CheckRequest{Direction: apiv1.Ingress, Protocol: p.Protocol, Address: p.From.Addr.String(), Port: port}
	}
	return out
}

// Env is the environment whose rules decide p in direction dir: the
// sender for egress, the receiver for ingress.
func (p Probe) Env(dir string) string {
	if dir == apiv1.Ingress {
		return p.To.Env
	}
	return p.From.Env
}

// Expect is what the oracle says p's fate should be: through only if
// every environment on the way allows it.
func Expect(p Probe, oracle Oracle) (bool, error) {
	allowed := true
	for dir, req := range p.Requests() {
		env := p.Env(dir)
		ok, err := oracle(env, req)
		if err != nil {
			return false, fmt.Errorf("oracle for %s %s: %w", env, dir, err)
		}
		allowed = allowed && ok
	}
	return allowed, nil
}

// ErrNotListening means a packet got through but nobody was there to
// answer: the test's set-up is wrong, not the rules.
var ErrNotListening = errors.New("refused: nothing listens there")

// Send sends p's packet and reports whether it got through and was
// answered within timeout. A packet the rules drop times out or, dropped
// on its way out, fails with EPERM; a flow the sender's egress rules
// refuse fails at once, with a reset (ECONNREFUSED, for TCP from an
// environment: the listeners answer on every port probed) or ICMP
// "administratively prohibited" (EHOSTUNREACH, or EACCES over IPv6).
// Each is "not through". Anything else is an error.
func Send(ctx context.Context, p Probe, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var (
		through bool
		err     error
	)
	switch p.Protocol {
	case apiv1.ProtocolTCP:
		through, err = sendTCP(p, deadline)
	case apiv1.ProtocolUDP:
		through, err = sendUDP(p, deadline)
	case apiv1.ProtocolICMP:
		through, err = sendICMP(p, deadline)
	case apiv1.ProtocolSCTP:
		through, err = sendSCTP(p, deadline)
	default:
		return false, fmt.Errorf("unknown protocol %q", p.Protocol)
	}
	if err == nil {
		return through, nil
	}
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout(), errors.Is(err, syscall.EPERM),
		Refused(err), p.Protocol == apiv1.ProtocolTCP && p.From.Env != "" && errors.Is(err, syscall.ECONNREFUSED):
		return false, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return true, fmt.Errorf("%s: %w", p, ErrNotListening)
	}
	return false, fmt.Errorf("%s: %w", p, err)
}

// Refused reports whether err is the ICMP "administratively prohibited"
// error a refused flow gets.
func Refused(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.EACCES)
}

func sendTCP(p Probe, deadline time.Time) (bool, error) {
	var c net.Conn
	err := Do(p.From.Namespace, func() error {
		d := net.Dialer{Deadline: deadline, LocalAddr: &net.TCPAddr{IP: p.From.Addr.AsSlice()}}
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(p.To.Addr, uint16(p.Port)).String())
		return err
	})
	if err != nil {
		return false, err
	}
	c.Close()
	return true, nil
}

var probeSeq atomic.Uint32

func sendUDP(p Probe, deadline time.Time) (bool, error) {
	var c *net.UDPConn
	err := Do(p.From.Namespace, func() error {
		var err error
		c, err = net.DialUDP("udp", &net.UDPAddr{IP: p.From.Addr.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.To.Addr, uint16(p.Port))))
		return err
	})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return false, err
	}
	msg := fmt.Appendf(nil, "probe %d", probeSeq.Add(1))
	if _, err := c.Write(msg); err != nil {
		return false, err
	}
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return false, err
		}
		if bytes.Equal(buf[:n], msg) {
			return true, nil
		}
	}
}

func sendICMP(p Probe, deadline time.Time) (bool, error) {
	network, reqType, replyType := "ip4:icmp", icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
	proto := 1
	if p.To.Addr.Is6() {
		network, reqType, replyType = "ip6:ipv6-icmp", ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
		proto = 58
	}
	var c net.PacketConn
	err := Do(p.From.Namespace, func() error {
		var err error
		c, err = net.ListenPacket(network, p.From.Addr.String())
		return err
	})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return false, err
	}
	seq := probeSeq.Add(1)
	// Conntrack keys echoes by identifier: a fresh one per probe keeps an
	// earlier probe's flow from letting this one through as "established".
	echo := &icmp.Echo{ID: int(seq & 0xffff), Seq: int(seq >> 16), Data: []byte("netnstest")}
	msg, err := (&icmp.Message{Type: reqType, Body: echo}).Marshal(nil) // the kernel sums ICMPv6
	if err != nil {
		return false, err
	}
	to := &net.IPAddr{IP: p.To.Addr.AsSlice()}
	if _, err := c.WriteTo(msg, to); err != nil {
		return false, err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return false, err
		}
		// A raw socket sees every ICMP packet for its address; pick ours.
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || src.Unmap() != p.To.Addr || m.Type != replyType {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == echo.ID && e.Seq == echo.Seq {
			return true, nil
		}
	}
}

// Result is a probe's expected and observed fate.
type Result struct {
	Probe
	Want, Got bool
	Err       error
}

// Agrees reports whether the packet did what the oracle said.
func (r Result) Agrees() bool { return r.Err == nil && r.Want == r.Got }

// patience is how long Run waits, the second time, for a packet the oracle
// says should get through: on a loaded machine an answer can take longer
// than the short timeout that keeps denied probes cheap, and slowness
// must not pass for a drop. A packet that gets through when it should
// not is never retried.
const patience = 2 * time.Second

// Run sends every probe, at most workers at a time, and asks oracle what
// each should have done. Results are in the order of probes.
func Run(ctx context.Context, probes []Probe, oracle Oracle, workers int, timeout time.Duration) []Result {
	out := make([]Result, len(probes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	for i, p := range probes {
		out[i].Probe = p
		if out[i].Want, out[i].Err = Expect(p, oracle); out[i].Err != nil {
			continue
		}
		if ctx.Err() != nil {
			out[i].Err = ctx.Err()
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := &out[i]
			r.Got, r.Err = Send(ctx, p, timeout)
			if r.Err == nil && r.Want && !r.Got {
				r.Got, r.Err = Send(ctx, p, patience)
			}
		})
	}
	wg.Wait()
	return out
}
