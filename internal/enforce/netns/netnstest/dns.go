package netnstest

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ServeDNS serves h on UDP and TCP at addr in the named namespace (a
// fake internet's resolver) until the test ends.
func ServeDNS(t testing.TB, namespace string, addr netip.AddrPort, h dns.Handler) {
	t.Helper()
	stop, err := StartDNS(namespace, addr, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// StartDNS serves h on UDP and TCP at addr in the named namespace until
// stop is called, for a caller that is not a test (the demo's internet).
func StartDNS(namespace string, addr netip.AddrPort, h dns.Handler) (stop func(), err error) {
	var pc net.PacketConn
	var ln net.Listener
	if err := Do(namespace, func() (err error) {
		if pc, err = net.ListenPacket("udp", addr.String()); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", addr.String()); err != nil {
			pc.Close()
		}
		return err
	}); err != nil {
		return nil, err
	}
	var stops []func()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.ActivateAndServe() }()
		<-started
		stops = append(stops, func() { _ = srv.Shutdown(); <-done })
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}, nil
}

// Query asks the DNS server at server, from the named namespace, for
// name's records of type qtype over network ("udp" or "tcp"), within
// timeout. The question carries EDNS0, so that a refusal can carry its
// Extended DNS Error (EDE).
func Query(namespace, network string, server netip.AddrPort, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	deadline := time.Now().Add(timeout)
	var c net.Conn
	if err := Do(namespace, func() (err error) {
		c, err = (&net.Dialer{Deadline: deadline}).Dial(network, server.String())
		return err
	}); err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: c}
	defer co.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	if err := co.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// EDE is m's Extended DNS Error as dig prints it (code, purpose and
// text), or "" when it has none.
func EDE(m *dns.Msg) string {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return e.String()
			}
		}
	}
	return ""
}
